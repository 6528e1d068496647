// The demo dataset: a seeded, synthetic OpenMIC-2018 layout rendered with fluidsynth (demo/generate.ts).
export { generateDemoData, planDemoData, DEMO_DESCRIPTION } from './generate';
export type { DemoDataOptions, DemoDataResult, DemoClip } from './generate';
