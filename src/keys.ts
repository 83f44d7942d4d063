// DPHIANT's two secrets, each a file of 64 hex characters (32 bytes), mode 0600:
//  - the site key: HMAC key of UID remapping, keyed hashes and the crosswalk's blind index. It must never change,
//    or every UID and every patient match changes.
//  - the crosswalk key: AES-256-GCM key of the PHI stored in the crosswalk; it can be rotated (`crosswalk rekey`).
// In the dev stack, missing keys are created in the data directory on first use, with a warning; never outside it.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export type KeyName = 'site' | 'crosswalk';

export function parseHexKey(text: string, where: string): Buffer {
  const t = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(t)) throw new Error(`${where}: must hold 64 hex characters (32 bytes)`);
  return Buffer.from(t, 'hex');
}

export function readKeyFile(file: string): Buffer {
  const key = parseHexKey(readFileSync(file, 'utf8'), `key file ${file}`);
  if ((statSync(file).mode & 0o077) !== 0) throw new Error(`key file ${file}: readable by group or others; chmod 600 it`);
  return key;
}

/** Writes a new random key; refuses to overwrite an existing file. */
export function writeKeyFile(file: string): Buffer {
  const key = randomBytes(32);
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeFileSync(file, key.toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
  return key;
}

export function devKeyPath(dataDir: string, name: KeyName): string {
  return path.join(dataDir, `${name}.key`);
}

/**
 * The key of `file`, else (dev stack only) the data directory's development key, created with `warn` told so.
 * Outside the dev stack a missing key is an error: a key created here would silently replace the site's.
 */
export function keyOrDevKey(file: string | undefined, dataDir: string, name: KeyName, warn: (msg: string) => void, devStack: boolean): Buffer {
  if (file) return readKeyFile(file);
  if (!devStack) throw new Error(`no ${name} key configured (${name === 'site' ? 'keyFile' : 'crosswalk.keyFile or crosswalk.key'}); outside the dev stack no key is created`);
  const dev = devKeyPath(dataDir, name);
  if (existsSync(dev)) return readKeyFile(dev);
  warn(`no ${name} key given: created the development key ${dev} (mode 0600); keep it${name === 'site' ? ', or every UID and alias changes' : ', or the crosswalk cannot be read'}`);
  return writeKeyFile(dev);
}
