// C-ECHO SCU: is the PACS there and does it accept us?
import dimse from '../dicom/dimse.js';
import type { PacsTarget } from './store.js';

const { Client } = dimse;
const { CEchoRequest } = dimse.requests;

/** Resolves with the C-ECHO status, or rejects with a reason that holds no PHI. */
export function echo(target: Pick<PacsTarget, 'host' | 'port' | 'aet' | 'callingAet' | 'connectTimeoutMs'>): Promise<number> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (fn: () => void) => {
      if (!settled) {
        settled = true;
        fn();
      }
    };
    const client = new Client();
    const request = new CEchoRequest();
    request.on('response', (rsp) => settle(() => resolve(rsp.getStatus())));
    request.on('done', () => settle(() => reject(new Error('C-ECHO ended without a response'))));
    client.on('associationRejected', (rj: { reason: number }) => settle(() => reject(new Error(`association rejected (reason ${rj.reason})`))));
    client.on('networkError', (e: Error) => settle(() => reject(new Error(e.message))));
    client.on('closed', () => settle(() => reject(new Error('connection closed'))));
    client.addRequest(request);
    client.send(target.host, target.port, target.callingAet, target.aet, {
      connectTimeout: target.connectTimeoutMs,
      associationTimeout: target.connectTimeoutMs,
    });
  });
}
