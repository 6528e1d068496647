// `calmkit predict`: instrument probabilities for audio files. The work is predictAudio's (the probe set's recipe
// retraced with the model it names); this command only prints.
import type { Command } from 'commander';
import type { Device } from '../runtime';
import { predictAudio } from '../study';
import { addDeviceOption, integer } from './options';
import { EXIT } from './exit';

export function register(program: Command): void {
  const cmd = program
    .command('predict')
    .description('instrument probabilities for audio files, with a trained probe set and the model its features came from')
    .argument('<audio...>', 'audio files')
    .requiredOption('--model <file>', 'the Jukebox checkpoint the probes were trained on (checked against the probe set)')
    .requiredOption('--probes <file>', 'a probe set (calmkit train / study)')
    .option('--json', 'print JSON');
  addDeviceOption(cmd)
    .option('--batch <n>', 'clips per forward pass', integer('--batch', { min: 1 }), 1)
    .action(async (files: string[], o: { model: string; probes: string; json?: boolean; device: Device; batch: number }) => {
      const p = await predictAudio(o.probes, o.model, files, { device: o.device, batchSize: o.batch });
      for (const f of p.failed) console.error(`${f.input}: ${f.code}: ${f.message}`);
      if (o.json) {
        const rows = p.inputs.map((file, i) => ({
          file,
          ...Object.fromEntries(p.instruments.map((name, k) => [name, p.probabilities[i * p.instruments.length + k]])),
        }));
        console.log(JSON.stringify(rows, null, 2));
      } else {
        p.inputs.forEach((file, i) => {
          const present = p.instruments.filter((name) => p.clips[i]![name]!.present);
          console.log(`${file}: ${present.length ? present.join(', ') : '(no instrument above threshold)'}`);
          for (const name of p.instruments) {
            const c = p.clips[i]![name]!;
            console.log(`  ${name.padEnd(18)} ${c.probability.toFixed(3)}${c.present ? '  present' : ''}`);
          }
        });
      }
      if (p.failed.length) process.exitCode = EXIT.SOME_FAILED;
    });
}
