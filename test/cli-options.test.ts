// The CLI's one set of flag parsers: ranges as the library's rules, choices from the library's runtime lists,
// and a grid spec whose mistakes are usage errors, not exceptions from JSON.parse.
import test from 'ava';
import { Command, InvalidArgumentError } from 'commander';
import { FORMATTINGS, POOLINGS, PRECISIONS, WINDOWS } from '../lib';
import { STORE_DTYPES } from '../lib/store';
import {
  addSettingsOptions,
  addTrainingFlags,
  choice,
  gridSpec,
  integer,
  layerList,
  positiveNumber,
  trainingOptions,
  type TrainingFlags,
} from '../lib/cli/options';
import { PAPER_GRID } from '../lib/probes';

test('integers and numbers: ranges are checked, text is not truncated', (t) => {
  const epochs = integer('--epochs', { min: 1 });
  t.is(epochs('800'), 800);
  for (const bad of ['0', '-3', '1.5', '12abc', '', '1e3']) t.throws(() => epochs(bad), { instanceOf: InvalidArgumentError }, bad);
  t.is(integer('--layers', { min: 1, max: 4096 })('4096'), 4096);
  t.throws(() => integer('--layers', { min: 1, max: 4096 })('4097'), { message: '--layers must be an integer in 1..4096' });
  t.is(positiveNumber('--factor')('6.2'), 6.2);
  for (const bad of ['0', '-1', 'x', '', 'Infinity']) t.throws(() => positiveNumber('--factor')(bad), { instanceOf: InvalidArgumentError }, bad);
  t.deepEqual(layerList('12, 36'), [12, 36]);
  t.throws(() => layerList('0,3'), { instanceOf: InvalidArgumentError });
});

test('choices are the library lists', (t) => {
  t.is(choice('--precision', PRECISIONS)('bf16'), 'bf16');
  t.throws(() => choice('--precision', PRECISIONS)('fp8'), { message: '--precision must be fp32, fp16 or bf16' });
  const cmd = addSettingsOptions(new Command('x').exitOverride());
  const help = cmd.helpInformation();
  for (const list of [POOLINGS, FORMATTINGS, WINDOWS, STORE_DTYPES, PRECISIONS]) t.true(help.includes(list.join(' | ')), list.join(' | '));
});

test('the training flags refuse 0 epochs and read a grid spec with coded mistakes', (t) => {
  const parse = (...args: string[]) => {
    const cmd = addTrainingFlags(new Command('train').exitOverride().configureOutput({ writeErr: () => undefined }));
    cmd.parse(args, { from: 'user' });
    return cmd.opts();
  };
  t.is(parse().epochs, 800);
  t.throws(() => parse('--epochs', '0'), { message: /--epochs must be an integer >= 1/ });
  t.throws(() => parse('--validation', 'random'), { message: /--validation must be stratified, gururani2019, artist or none/ });
  t.is(parse().probePrecision, 'fp32');
  t.is(trainingOptions(parse('--probe-precision', 'bf16') as TrainingFlags).matmulPrecision, 'bf16');
  t.throws(() => parse('--probe-precision', 'fp16'), { message: /--probe-precision must be fp32 or bf16/ });
  t.deepEqual(parse('--grid', 'hidden=[];[16] l2=0,1e-4').grid, { hidden: [[], [16]], dropout: PAPER_GRID.dropout, l2: [0, 1e-4] });
  t.throws(() => gridSpec('hidden=[512'), { instanceOf: InvalidArgumentError, message: /hidden takes layer lists/ });
  t.throws(() => gridSpec('dropout=0.5,x'), { instanceOf: InvalidArgumentError, message: /dropout takes numbers/ });
  t.throws(() => gridSpec('width=3'), { instanceOf: InvalidArgumentError, message: /unknown key 'width'/ });
});
