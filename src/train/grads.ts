/**
 * Gradients of scalar losses with respect to the model's parameters, as plain Float32Arrays keyed
 * by parameter name, and the gradient-angle diagnostic of DESIGN §8.
 */
import { tf } from '../engine/tf.js';
import type { UvuModel } from '../model/model.js';
import type { GradMap } from '../optim/adamw.js';

/** ∇ loss over every parameter. `loss` runs inside the gradient tape (tensors it makes are freed). */
export function lossGrads(model: UvuModel, loss: () => tf.Scalar): { value: number; grads: GradMap } {
  const byVarName = new Map<string, string>();
  for (const [name, v] of model.params) byVarName.set(v.name, name);
  const { value, grads } = tf.variableGrads(loss, [...model.params.values()]);
  const out: GradMap = new Map();
  for (const [varName, g] of Object.entries(grads)) {
    out.set(byVarName.get(varName)!, Float32Array.from(g.dataSync() as Float32Array));
    g.dispose();
  }
  const v = value.dataSync()[0]!;
  value.dispose();
  return { value: v, grads: out };
}

/**
 * a·wa + b·wb per parameter (a parameter missing from one map counts as a zero gradient there),
 * into `out`'s arrays where it has them (reused across steps), else into new ones.
 */
export function combineGrads(a: GradMap, wa: number, b: GradMap, wb: number, out: GradMap = new Map()): GradMap {
  for (const name of new Set([...a.keys(), ...b.keys()])) {
    const ga = a.get(name);
    const gb = b.get(name);
    const n = (ga ?? gb)!.length;
    const g = out.get(name) ?? new Float32Array(n);
    for (let i = 0; i < n; i++) g[i] = (ga ? wa * ga[i]! : 0) + (gb ? wb * gb[i]! : 0);
    out.set(name, g);
  }
  return out;
}

export interface GradientAngle {
  /** cos θ = ⟨g_img, g_txt⟩ / (‖g_img‖‖g_txt‖) over the shared parameters. */
  cos: number;
  /** θ in degrees: < 90 the two losses pull the shared weights the same way, > 90 they conflict. */
  degrees: number;
  normImage: number;
  normText: number;
}

/** The angle between two gradients restricted to the named (shared) parameters (DESIGN §8). */
export function gradientAngle(gImage: GradMap, gText: GradMap, shared: string[]): GradientAngle {
  let dot = 0;
  let nnI = 0;
  let nnT = 0;
  for (const name of shared) {
    const a = gImage.get(name);
    const b = gText.get(name);
    if (a) for (let i = 0; i < a.length; i++) nnI += a[i]! * a[i]!;
    if (b) for (let i = 0; i < b.length; i++) nnT += b[i]! * b[i]!;
    if (a && b) for (let i = 0; i < a.length; i++) dot += a[i]! * b[i]!;
  }
  const normImage = Math.sqrt(nnI);
  const normText = Math.sqrt(nnT);
  const cos = normImage > 0 && normText > 0 ? Math.max(-1, Math.min(1, dot / (normImage * normText))) : NaN;
  return { cos, degrees: (Math.acos(cos) * 180) / Math.PI, normImage, normText };
}
