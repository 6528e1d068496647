// Child process for test/store.test.ts: one independent writer on a shared store.
// argv: dir id from to shardSize mode   (mode: 'keys' writes key{from..to-1} once; 'forever' never stops)
import { FeatureStore } from '../../lib/store/feature-store';

const [dir, id, fromS, toS, shardSizeS, mode] = process.argv.slice(2);
const spec = { model: { id: 'test-model', hash: 'abc' }, layers: [36], pooling: 'mean', formatting: 'tile', dtype: 'float32' as const };
const store = FeatureStore.open(dir!, { create: spec });
const w = store.writer({ id: id!, shardSize: Number(shardSizeS) });
// Writer 'b...' adds 0.5 so a test can tell whose copy of a duplicated key won.
const bias = id!.startsWith('b') ? 0.5 : 0;
const valueAt = (i: number, dim: number) => Float32Array.from({ length: dim }, (_, j) => i * 1000 + j + bias);
if (mode === 'forever') {
  const dim = 8000;
  for (let i = 0; ; i++) w.put(`big${String(i).padStart(7, '0')}`, valueAt(i, dim));
} else {
  for (let i = Number(fromS); i < Number(toS); i++) {
    w.put(`key${String(i).padStart(4, '0')}`, valueAt(i, 8));
    if (i % 5 === 0) w.fail(`bad${i}`, { input: `/audio/bad${i}.ogg`, code: 'ERR_AUDIO_DECODE', message: 'cannot decode' });
  }
  w.close();
}
