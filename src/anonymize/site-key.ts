// The site key: the secret behind UID remapping, keyed hashes and (from the crosswalk on) the blind index.
// A file holding 64 hex characters (32 bytes). Without one, the data directory's development key is used,
// created on first use with mode 0600.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export function readSiteKey(file: string): Buffer {
  const text = readFileSync(file, 'utf8').trim();
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new Error(`key file ${file}: must hold 64 hex characters (32 bytes)`);
  if ((statSync(file).mode & 0o077) !== 0) throw new Error(`key file ${file}: readable by group or others; chmod 600 it`);
  return Buffer.from(text, 'hex');
}

export function writeSiteKey(file: string): Buffer {
  const key = randomBytes(32);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, key.toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
  return key;
}

export function devKeyPath(dataDir: string): string {
  return path.join(dataDir, 'site.key');
}

/** The key of `file`, else the data directory's development key (created, with `warn` told so). */
export function siteKey(file: string | undefined, dataDir: string, warn: (msg: string) => void): Buffer {
  if (file) return readSiteKey(file);
  const dev = devKeyPath(dataDir);
  if (existsSync(dev)) return readSiteKey(dev);
  warn(`no key given: created the development key ${dev} (mode 0600); keep it, or every UID and alias changes`);
  return writeSiteKey(dev);
}
