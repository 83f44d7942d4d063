// The data directory holds the journal, the crosswalk file, the quarantine, the spool and the development keys:
// none of it is for other users of the machine. It is made 0700 and its files 0600; whatever is wider at start-up
// (made by an older version, copied in, or created under a loose umask) is narrowed, with a warning.
import { chmodSync, lstatSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';

/** Creates `dir` (0700) if needed and narrows it and everything inside it; `warn` is told of each change. */
export function secureDataDir(dir: string, warn: (msg: string) => void): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  narrow(dir, warn);
}

function narrow(p: string, warn: (msg: string) => void): void {
  const st = lstatSync(p);
  if (st.isSymbolicLink()) return; // not ours to change: it points elsewhere
  const want = st.isDirectory() ? 0o700 : 0o600;
  if ((st.mode & 0o077) !== 0) {
    chmodSync(p, (st.mode & 0o700) | want);
    warn(`${p} was open to group or others (mode ${(st.mode & 0o777).toString(8)}): now ${((st.mode & 0o700) | want).toString(8)}`);
  }
  if (st.isDirectory()) for (const name of readdirSync(p)) narrow(path.join(p, name), warn);
}
