// `calmkit store verify DIR [--repair]` and `calmkit store upgrade DIR`: check every byte of a feature store against
// its checksums, shard by shard; move damaged shards aside (quarantine/, nothing deleted) so that the next
// `calmkit extract` re-extracts exactly their clips; seal a version 1 store as version 2.
import type { Command } from 'commander';
import { FeatureStore } from '../store';
import { EXIT } from './exit';

function show(keys: readonly string[] | undefined): string {
  if (!keys) return 'clips unknown';
  return `${keys.length} clip${keys.length === 1 ? '' : 's'}${keys.length ? `: ${keys.slice(0, 5).join(', ')}${keys.length > 5 ? ', ...' : ''}` : ''}`;
}

export function register(program: Command): void {
  const store = program.command('store').description('check, repair and upgrade a feature store');
  store
    .command('verify')
    .description('read every shard in full and check it against its checksums; exit 1 when something is damaged (unless --repair moved it aside)')
    .argument('<dir>', 'a feature store (e.g. OUT/layer-36)')
    .option('--repair', 'move damaged shards (and a damaged manifest.json) into DIR/quarantine/; the next extract re-extracts their clips')
    .action((dir: string, o: { repair?: boolean }) => {
      const s = FeatureStore.open(dir);
      const report = s.verify({ repair: o.repair === true });
      for (const d of report.details) {
        const what = d.shard === 'manifest.json' ? 'manifest.json' : `shards/${d.shard}`;
        if (d.ok) console.log(`ok       ${what} (${d.clips} clip${d.clips === 1 ? '' : 's'}${d.version === 1 ? ', format 1: checked by its sha256' : ''})`);
        else console.log(`DAMAGED  ${what}: ${d.message} [${show(report.corrupt.find((c) => c.shard === d.shard)?.keys)}]`);
      }
      console.log(
        `${report.shards} shard${report.shards === 1 ? '' : 's'}, ${report.entries} clips, ${report.duplicates} duplicate${report.duplicates === 1 ? '' : 's'}, ${report.corrupt.length} damaged`,
      );
      if (report.version1Shards > 0)
        console.log(
          `${report.version1Shards} shard(s) of format 1 (no entry checksums: each read proves the whole shard by its sha256); \`calmkit store upgrade ${dir}\` seals them`,
        );
      if (report.repaired) {
        const r = report.repaired;
        console.log(
          `moved ${r.files.length} file(s) to ${r.quarantine} (nothing deleted); ${r.clips} clip(s) to re-extract${r.unknownShards ? `, and those of ${r.unknownShards} shard(s) no record names` : ''}: run the same \`calmkit extract\` again`,
        );
      } else if (!report.ok) {
        console.log(`run \`calmkit store verify ${dir} --repair\` to move the damaged files aside`);
        process.exitCode = EXIT.ERROR;
      }
    });
  store
    .command('upgrade')
    .description('seal a format 1 store as format 2 in place: each shard proven by its sha256 gets a checksum per clip (the .npy files are not rewritten)')
    .argument('<dir>', 'a feature store')
    .action((dir: string) => {
      const r = FeatureStore.open(dir).upgrade();
      console.log(`${dir}: ${r.shards} shard(s) upgraded${r.storeJson ? ', store.json sealed' : ''}; the store is format 2`);
    });
}
