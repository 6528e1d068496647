#!/usr/bin/env node
// The calmkit CLI: one file per command, each exporting register(program); shared flag parsers in options.ts.
import { Command } from 'commander';
import { calmkitVersion } from '../runtime';
import { register as registerAudio } from './audio';
import { register as registerBench } from './bench';
import { register as registerDemoData } from './demo-data';
import { register as registerDoctor } from './doctor';
import { register as registerExtract } from './extract';
import { register as registerModel } from './model';
import { register as registerPredict } from './predict';
import { register as registerQueue } from './queue';
import { register as registerReport } from './report';
import { register as registerStore } from './store';
import { register as registerStudy } from './study';
import { register as registerTrain } from './train';
import { register as registerWorker } from './worker';
import { exitCodeFor, formatError, verboseErrors } from './exit';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('calmkit')
    .description('Jukebox CALM representations and instrument-recognition probes')
    .version(calmkitVersion())
    .option('--verbose', 'on an error, print its stack and causes too (also CALMKIT_DEBUG=1)');
  const commands = [
    registerDoctor,
    registerAudio,
    registerModel,
    registerDemoData,
    registerExtract,
    registerTrain,
    registerPredict,
    registerReport,
    registerStudy,
    registerStore,
    registerQueue,
    registerWorker,
    registerBench,
  ];
  for (const register of commands) register(program);
  return program;
}

export async function main(argv: string[] = process.argv): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    console.error(formatError(err, verboseErrors(argv)));
    process.exitCode = process.exitCode || exitCodeFor(err);
  }
}

if (require.main === module) void main();
