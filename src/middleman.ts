// The middleman assembled: configuration → journal → ingest (forward to PACS) → DICOM server.
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Config } from './config/index.js';
import type { Logger } from './log.js';
import { Ingest } from './pipeline/ingest.js';
import { Journal, journalPath } from './pipeline/journal.js';
import { DicomServer } from './scp/server.js';
import type { PacsTarget } from './scu/store.js';

export interface Middleman {
  journal: Journal;
  dicom: AddressInfo;
  close(): Promise<void>;
}

export function pacsTarget(config: Config): PacsTarget {
  const { host, port, aet, callingAet, connectTimeoutMs, storeTimeoutMs } = config.pacs;
  return { host, port, aet, callingAet, connectTimeoutMs, storeTimeoutMs };
}

export async function startMiddleman(config: Config, log: Logger): Promise<Middleman> {
  const journal = new Journal(journalPath(config.dataDir));
  const ingest = new Ingest(journal, pacsTarget(config), log);
  const server = new DicomServer({
    scp: config.scp,
    spoolDir: path.join(config.dataDir, 'spool'),
    ingest: (inst) => ingest.store(inst),
    log,
  });
  let dicom: AddressInfo;
  try {
    dicom = await server.listen();
  } catch (e) {
    journal.close();
    throw e;
  }
  log.info({ host: dicom.address, port: dicom.port, aet: config.scp.aet, pacs: `${config.pacs.aet}@${config.pacs.host}:${config.pacs.port}` }, 'DICOM server listening');
  return {
    journal,
    dicom,
    async close() {
      await server.close();
      journal.close();
    },
  };
}
