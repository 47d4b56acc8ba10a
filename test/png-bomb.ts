/** A decompression bomb for tests: a tiny valid PNG whose header declares a huge size. Holds no tests. */
import sharp from 'sharp';

/** CRC-32 as PNG chunks use it. */
function crc32(bytes: Uint8Array): number {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

/** An 8×8 grey PNG whose IHDR is rewritten (CRC fixed) to declare width×height: a few hundred bytes. */
export async function pngDeclaring(width: number, height: number): Promise<Buffer> {
  const png = Buffer.from(await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } }).png().toBuffer());
  // Signature (8) + IHDR length (4) + "IHDR" (4): width and height follow, then the CRC over type + data.
  png.writeUInt32BE(width, 16);
  png.writeUInt32BE(height, 20);
  png.writeUInt32BE(crc32(png.subarray(12, 29)), 29);
  return png;
}
