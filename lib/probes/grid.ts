// The grid of probe configs: architectures x dropout rates x L2 weights, the paper's 27, and the attention grid.
import { ArgumentError } from '../errors';

/** One probe architecture and its regularisation. */
export interface ProbeConfig {
  /** Hidden layer sizes: [] is a linear probe (still with input dropout). */
  hidden: number[];
  /** Dropout rate on the input and after every hidden ReLU. */
  dropout: number;
  /** Adam's coupled weight decay (L2 added to the gradient, not AdamW). */
  l2: number;
  /**
   * Attention pooling over the segments of each clip (segment features): the hidden layers run on every segment,
   * then a score and an attention logit per segment, softmax weights over the clip's segments, and the clip's
   * logit is the weighted sum of the scores. Absent: the paper's probe on one vector per clip.
   */
  attention?: true;
  /**
   * Any other head of the trainer's registry, by name (native/core/probes_heads.cpp; `attention: true` is the
   * attention head's spelling): what turns the shared layers' scores into the clip's logit. Absent: the paper's MLP
   * probe. The core refuses a name it does not know.
   */
  head?: string;
}

/** A grid as the product of its axes. */
export interface ProbeGrid {
  hidden: number[][];
  dropout: number[];
  l2: number[];
  /** Every config of the grid pools segments with attention. */
  attention?: boolean;
  /** Every config of the grid has this head (ProbeConfig.head). */
  head?: string;
}

/** The paper's grid: 3 architectures x 3 dropouts x 3 L2 = 27 configs per instrument. */
export const PAPER_GRID: ProbeGrid = Object.freeze({
  hidden: [[], [512], [512, 256]],
  dropout: [0.25, 0.5, 0.75],
  l2: [0, 1e-4, 1e-3],
}) as ProbeGrid;

/**
 * The attention probes' grid: a per-segment projection to 128 or 512 units x the paper's dropouts x its L2
 * weights = 18 configs per instrument.
 */
export const ATTENTION_GRID: ProbeGrid = Object.freeze({
  hidden: [[128], [512]],
  dropout: [0.25, 0.5, 0.75],
  l2: [0, 1e-4, 1e-3],
  attention: true,
}) as ProbeGrid;

/** The grid's configs in order: hidden-major, then dropout, then L2. */
export function expandGrid(grid: ProbeGrid): ProbeConfig[] {
  const bad = (msg: string): never => {
    throw new ArgumentError('ERR_INVALID_ARGUMENT', `grid: ${msg}`, { input: 'grid' });
  };
  if (!grid || typeof grid !== 'object' || !Array.isArray(grid.hidden) || !Array.isArray(grid.dropout) || !Array.isArray(grid.l2))
    bad('needs hidden, dropout and l2 arrays');
  if (grid.hidden.some((h) => !Array.isArray(h) || h.some((x) => typeof x !== 'number'))) bad('hidden sizes must be arrays of positive integers');
  if ([...grid.dropout, ...grid.l2].some((x) => typeof x !== 'number')) bad('dropout and l2 must be numbers');
  if (grid.attention !== undefined && typeof grid.attention !== 'boolean') bad('attention must be true or false');
  if (grid.head !== undefined && (typeof grid.head !== 'string' || grid.head === '')) bad('head must be the name of a probe head');
  // One spelling per head in what the grid gives back: the attention head is `attention: true`, the MLP none.
  if (grid.attention !== undefined && grid.head !== undefined && (grid.head === 'attention') !== grid.attention) {
    bad(`attention: ${grid.attention} contradicts head: '${grid.head}' (one head per grid)`);
  }
  const attention = grid.attention === true || grid.head === 'attention';
  const head = grid.head !== undefined && grid.head !== 'attention' && grid.head !== 'mlp' ? grid.head : undefined;
  const out: ProbeConfig[] = [];
  for (const hidden of grid.hidden) {
    for (const dropout of grid.dropout) {
      for (const l2 of grid.l2)
        out.push({ hidden: [...hidden], dropout, l2, ...(attention ? { attention: true as const } : {}), ...(head !== undefined ? { head } : {}) });
    }
  }
  return out;
}

/** A config's architecture as a label: "[512]", "attention [512]", or another head's name before the sizes. */
export function configLabel(c: Pick<ProbeConfig, 'hidden' | 'attention' | 'head'>): string {
  const head = c.attention ? 'attention' : c.head;
  return `${head ? `${head} ` : ''}[${c.hidden.join(', ')}]`;
}

/** The grid's configs; the shape of `grid` is checked here, its numbers by the core. */
export function gridConfigs(grid: ProbeGrid): ProbeConfig[] {
  const bad = (msg: string): never => {
    throw new ArgumentError('ERR_INVALID_ARGUMENT', `grid: ${msg}`);
  };
  const configs = expandGrid(grid);
  if (configs.length === 0) bad('is empty');
  return configs;
}
