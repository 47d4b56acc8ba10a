/** The explorer's page: one route per view (#/codebook, #/roundtrip, #/runs, #/eval). */
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { json, type Config } from './api.js';
import { codebookPage } from './codebook.js';
import { roundtripPage } from './roundtrip.js';
import { runsPage } from './runs.js';
import { evalPage } from './evals.js';

const main = document.getElementById('main')!;
let config: Promise<Config> | null = null;
/** Stops what the current page left running (the runs page's event streams). */
let leave: () => void = () => undefined;

async function route(): Promise<void> {
  leave();
  leave = () => undefined;
  config ??= json<Config>('/api/config');
  const cfg = await config;
  performance.mark('uvu:config');
  const page = location.hash.replace(/^#\/?/, '').split('?')[0] || 'codebook';
  for (const a of document.querySelectorAll<HTMLAnchorElement>('#nav a')) a.classList.toggle('active', a.dataset.page === page);
  main.replaceChildren();
  main.dataset.page = page;
  main.dataset.ready = '0';
  try {
    if (page === 'roundtrip') await roundtripPage(main, cfg);
    else if (page === 'runs') leave = runsPage(main, cfg);
    else if (page === 'eval') await evalPage(main, cfg);
    else await codebookPage(main, cfg);
  } catch (err) {
    main.append(Object.assign(document.createElement('p'), { className: 'error', textContent: String((err as Error).message) }));
  }
  main.dataset.ready = '1';
}

window.addEventListener('hashchange', () => void route());
void route();
