// The calmkit package itself: where it is installed and which version it is.
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../addon';

export { packageRoot };

/** The version in calmkit's package.json. */
export function calmkitVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}
