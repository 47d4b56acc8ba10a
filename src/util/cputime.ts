/**
 * CPU time, for reporting what a job costs on a shared machine: wall time says how crowded the
 * machine was, CPU time (user + system, summed over threads) says how much work the job did. A step
 * that keeps two cores busy for a minute counts two CPU-minutes.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticksPerSecond: number | null = null;

/** The kernel's clock ticks per second (USER_HZ), the unit of /proc's CPU times. */
function clockTicksPerSecond(): number {
  if (ticksPerSecond === null) {
    const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    if (!(ticks > 0)) throw new Error(`getconf CLK_TCK gave "${ticks}"`);
    ticksPerSecond = ticks;
  }
  return ticksPerSecond;
}

/**
 * CPU seconds used so far by this process and by every child process it has waited for (what
 * `spawnSync` runs counts once it has exited). Read from /proc/self/stat, so Linux only: null
 * elsewhere, where the children's time cannot be read.
 */
export function cpuSecondsSoFar(): number | null {
  let stat: string;
  try {
    stat = readFileSync('/proc/self/stat', 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses, so count fields after its closing
  // parenthesis: state is field 3; utime, stime, cutime, cstime are fields 14–17 (proc(5)).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = [14, 15, 16, 17].reduce((sum, field) => sum + Number(fields[field - 3]), 0);
  return ticks / clockTicksPerSecond();
}
