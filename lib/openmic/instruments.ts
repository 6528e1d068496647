// The 20 instrument classes of OpenMIC-2018.
/** The OpenMIC-2018 class map, index order (identical to the release's class-map.json). */
export const OPENMIC_INSTRUMENTS: readonly string[] = [
  'accordion',
  'banjo',
  'bass',
  'cello',
  'clarinet',
  'cymbals',
  'drums',
  'flute',
  'guitar',
  'mallet_percussion',
  'mandolin',
  'organ',
  'piano',
  'saxophone',
  'synthesizer',
  'trombone',
  'trumpet',
  'ukulele',
  'violin',
  'voice',
];
