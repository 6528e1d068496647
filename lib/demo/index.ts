// The demo dataset: a seeded, synthetic OpenMIC-2018 layout rendered with fluidsynth (demo/generate.ts).
export { generateDemoData, planDemoData } from './generate';
export type { DemoDataOptions, DemoDataResult, DemoClip } from './generate';
