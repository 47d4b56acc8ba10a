import { FlatIndex, bruteForceNearest } from './dist/src/codebook/search.js';
import { sgemm, sgemmTs, blasInfo } from './dist/src/linalg/blas.js';
console.log(blasInfo());
const D=3072, K=1000, n=200;
const c=new Float32Array(K*D).map(()=>0.9+0.1*Math.random()); const q=new Float32Array(n*D).map(()=>0.9+0.1*Math.random());
const idx=new FlatIndex(c,K,D,{chunkQueries:64, chunkCenters:300});
let t=performance.now(); const a=idx.search(q,n); console.log('flat', performance.now()-t);
t=performance.now(); const b=bruteForceNearest(q,n,c,K,D); console.log('brute', performance.now()-t);
let bad=0; for(let i=0;i<n;i++) if(a.ids[i]!==b.ids[i]||a.distSq[i]!==b.distSq[i]) bad++; console.log('mismatch', bad);
const M=256,N=1024; const A=new Float32Array(M*D).map(Math.random), B=new Float32Array(N*D).map(Math.random), C=new Float32Array(M*N);
for (let r=0;r<3;r++){t=performance.now(); sgemmTs(false,true,M,N,D,1,A,D,B,D,0,C,N); const dt=(performance.now()-t)/1e3; console.log('fallback gflops', 2*M*N*D/dt/1e9);}
const C2=new Float32Array(M*N); sgemm(false,true,M,N,D,1,A,D,B,D,0,C2,N); let md=0; for(let i=0;i<C.length;i++) md=Math.max(md,Math.abs(C[i]-C2[i])); console.log('maxdiff', md);
