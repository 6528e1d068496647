// One device grammar in the core (native/core/device.cpp) for the model and the probe trainer: the same names
// are accepted (cuda:N included) and refused with the same words by both.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { ArgumentError, DeviceError, Jukebox, doctor, trainProbeGrid } from '../lib';
import { tempDir } from './helpers/paths';
import { synthProblem } from './helpers/probe-data';

const p = synthProblem({ n: 120, dim: 3, seed: 2, tasks: [{ instrument: 'organ', flip: 0.1, train: 60, val: 20, test: 30 }] });
const train = (device: string) =>
  trainProbeGrid({ features: p.features, dim: p.dim, tasks: p.tasks, grid: { hidden: [[]], dropout: [0.25], l2: [0] }, epochs: 1, device: device as 'cpu' });
const tmp = tempDir('calmkit-device-');
test.after.always(() => fs.rmSync(tmp, { recursive: true, force: true }));
const model = (async () => {
  const file = path.join(tmp, 'tiny.pt');
  await Jukebox.writeRandomCheckpoint({ preset: 'tiny', layers: 1, out: file });
  return file;
})();

test('the probe trainer and the model read device names with one grammar', async (t) => {
  const file = await model;
  const gpus = doctor().cuda.devices.length;
  for (const bad of ['gpu', 'cuda:', 'cuda:x', 'CPU']) {
    const a = await t.throwsAsync(train(bad), { instanceOf: ArgumentError });
    const b = await t.throwsAsync(Jukebox.load(file, { device: bad as 'cpu' }), { instanceOf: ArgumentError });
    t.is(a!.message, `device must be cpu, cuda, cuda:N or auto; got '${bad}'`);
    t.is(b!.message, a!.message);
  }
  // cuda:N is a device name for both; on a machine with fewer GPUs it is an unavailable device, not a bad name.
  const e = await t.throwsAsync(train(`cuda:${gpus + 1}`), { instanceOf: DeviceError });
  t.is(e!.code, 'ERR_DEVICE');
  await t.throwsAsync(Jukebox.load(file, { device: `cuda:${gpus + 1}` }), { instanceOf: DeviceError, message: e!.message });
  await t.notThrowsAsync(train('cpu'));
  await t.notThrowsAsync(train('auto'));
});
