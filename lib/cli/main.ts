#!/usr/bin/env node
// The calmkit CLI. Each topic registers its commands from its own file.
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { packageRoot } from '../../bindings';
import { CalmkitError } from '../errors';
import { register as registerAudio } from './audio';
import { register as registerDemoData } from './demo-data';
import { register as registerDoctor } from './doctor';
import { register as registerExtract } from './extract';
import { register as registerModel } from './model';
import { register as registerQueue } from './queue';
import { register as registerStudy } from './study';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('calmkit')
    .description('Jukebox CALM representations and instrument-recognition probes')
    .version(JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')).version as string);
  for (const register of [registerDoctor, registerAudio, registerModel, registerDemoData, registerExtract, registerStudy, registerQueue]) register(program);
  return program;
}

export async function main(argv: string[] = process.argv): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof CalmkitError) {
      console.error(`calmkit: ${err.code}: ${err.message}`);
    } else {
      console.error(`calmkit: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
    process.exitCode = process.exitCode || 1;
  }
}

if (require.main === module) void main();
