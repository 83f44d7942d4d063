// Where the project's own files are at run time, compiled (dist/src/…) or not.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findRepoRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'src'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`cannot find the DPHIANT folder above ${start}`);
  }
}

/** The folder holding package.json, src/, orthanc/. */
export const repoRoot = findRepoRoot(path.dirname(fileURLToPath(import.meta.url)));

/** A file of the project by its path from the project folder. */
export function findUp(relative: string): string {
  return path.join(repoRoot, relative);
}
