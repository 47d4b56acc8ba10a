/**
 * What the experiment scripts share about a run's recorded settings (settings.json, and
 * report.json's `settings`): the size fields added after runs were made, which older records
 * lack and which were off for them; the configurations it compares.
 */
/** The configurations of the comparison, in the order every table lists them. */
export const VARIANTS = ['uvu', 'text-only', 'ar-vq'] as const;
export type Variant = (typeof VARIANTS)[number];

const FIELDS_ADDED: Readonly<Record<string, number | string>> = { cooldownSteps: 0, spatialSteps: 0, spatialAnswer: 'yes-no' };

/** Recorded settings with the added fields filled in as off, where the record predates them. */
export function withAddedFields<T extends Record<string, unknown>>(settings: T): T {
  return { ...FIELDS_ADDED, ...settings };
}
