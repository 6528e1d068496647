// Prints how much resident memory loading a checkpoint adds, measured after the addon itself is loaded.
import fs from 'node:fs';
import { Jukebox, doctor } from '../../lib';

(async () => {
  doctor();
  const before = process.memoryUsage().rss;
  const model = await Jukebox.load(process.argv[2]);
  const after = process.memoryUsage().rss;
  process.stdout.write(JSON.stringify({ delta: after - before, fileBytes: fs.statSync(process.argv[2]).size, nCtx: model.info.nCtx, width: model.info.width }));
  model.dispose();
})();
