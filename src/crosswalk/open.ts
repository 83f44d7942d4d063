// Opens the configured crosswalk: the embedded SQLite file by default, MongoDB when crosswalk.url says so.
import path from 'node:path';
import type { Config } from '../config/index.js';
import { keyOrDevKey, parseHexKey } from '../keys.js';
import { Sealer } from './crypto.js';
import { SqliteCrosswalk } from './sqlite.js';
import type { CrosswalkSettings, CrosswalkStore } from './store.js';
import type { MongoCrosswalk } from './mongo.js';

/** The database shared by several nodes, where their leases (and web sessions) live too. */
export type SharedDatabase = Pick<MongoCrosswalk, 'collection'>;

/** The crosswalk's shared database, or null for the embedded one (one node only). */
export function sharedDatabase(crosswalk: CrosswalkStore): SharedDatabase | null {
  return 'collection' in crosswalk ? (crosswalk as SharedDatabase) : null;
}

export interface Keys {
  site: Buffer;
  crosswalk: Buffer;
}

/** The site key and the crosswalk key of the configuration (dev stack only: created in the data directory when missing). */
export function loadKeys(config: Config, warn: (msg: string) => void): Keys {
  const site = keyOrDevKey(config.keyFile || undefined, config.dataDir, 'site', warn, config.devStack);
  const crosswalk = config.crosswalk.key
    ? parseHexKey(config.crosswalk.key, 'crosswalk.key')
    : keyOrDevKey(config.crosswalk.keyFile || undefined, config.dataDir, 'crosswalk', warn, config.devStack);
  if (site.equals(crosswalk)) throw new Error('the site key and the crosswalk key must differ');
  return { site, crosswalk };
}

/** `alsoOpenWith`: keys that may have sealed some values too (a rekey that resumes an interrupted one). */
export function crosswalkSettings(config: Config, keys: Keys, alsoOpenWith: Buffer[] = []): CrosswalkSettings {
  const c = config.crosswalk;
  return {
    siteKey: keys.site,
    sealer: new Sealer(keys.crosswalk, alsoOpenWith),
    matchKey: c.matchKey,
    unidentified: c.unidentified,
    aliasPattern: c.aliasPattern,
    aliasPrefix: c.aliasPrefix,
    dateOffsetMinDays: c.dateOffsetMinDays,
    dateOffsetMaxDays: c.dateOffsetMaxDays,
  };
}

export function crosswalkFile(dataDir: string): string {
  return path.join(dataDir, 'crosswalk.sqlite');
}

export async function openCrosswalk(config: Config, keys: Keys, alsoOpenWith: Buffer[] = []): Promise<CrosswalkStore> {
  const settings = crosswalkSettings(config, keys, alsoOpenWith);
  // the MongoDB driver is loaded only when used: it takes longer to load than the embedded crosswalk to open
  if (config.crosswalk.url) return (await import('./mongo.js')).MongoCrosswalk.open(config.crosswalk.url, settings);
  return new SqliteCrosswalk(crosswalkFile(config.dataDir), settings);
}
