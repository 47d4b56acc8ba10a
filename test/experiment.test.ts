import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../scripts/experiment.js', import.meta.url));

test('the experiment runs end to end at the tiny size: three configurations pretrained, fine-tuned and scored', () => {
  const out = mkdtempSync(join(tmpdir(), 'uvu-experiment-'));
  try {
    const r = spawnSync(process.execPath, [script, '--size', 'tiny', '--out', out, '--no-write'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.equal(r.status, 0, r.stderr.slice(-2000));
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    for (const variant of ['uvu', 'text-only', 'ar-vq']) {
      const e = report.evals[variant];
      assert.ok(e.n > 0, variant);
      for (const task of Object.keys(e.tasks)) {
        const s = e.tasks[task];
        assert.ok(s.accuracy >= 0 && s.accuracy <= 1 && s.ci95[0] <= s.accuracy && s.accuracy <= s.ci95[1], `${variant} ${task}`);
      }
      for (const stage of ['pretrain', 'sft']) assert.ok(existsSync(join(out, 'runs', `${variant}-${stage}`, 'checkpoint', 'state.json')));
    }
    // text-only never supervises image codes; uvu and ar-vq do in pretraining, nobody in SFT.
    assert.equal(report.runs['text-only-pretrain'].finalLoss.image, null);
    assert.notEqual(report.runs['uvu-pretrain'].finalLoss.image, null);
    assert.notEqual(report.runs['ar-vq-pretrain'].finalLoss.image, null);
    assert.equal(report.runs['uvu-sft'].finalLoss.image, null);
    assert.ok(report.codebook.test.prp > 0 && report.vq.test.prp !== undefined);
    assert.ok(existsSync(join(out, 'losses.png')));
    // A rerun resumes: every step's output exists, so nothing is recomputed.
    const again = spawnSync(process.execPath, [script, '--size', 'tiny', '--out', out, '--no-write'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.equal(again.status, 0);
    assert.ok(!again.stderr.includes('[experiment] train-'), 'a finished experiment reruns no training step');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
