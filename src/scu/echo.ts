// C-ECHO SCU: is the PACS there and does it accept us? Over the same kind of association as the forwards (TCP or
// TLS as pacs.tls says: src/dicom/dimse.ts opens every connection to the PACS).
import { AssociationRejectedError, StoreAssociation, VERIFICATION_CONTEXT } from '../dicom/dimse.js';
import type { PacsTarget } from './store.js';

/** Resolves with the C-ECHO status, or rejects with a reason that holds no PHI. */
export async function echo(target: Pick<PacsTarget, 'host' | 'port' | 'aet' | 'callingAet' | 'connectTimeoutMs' | 'tls'>): Promise<number> {
  const association = new StoreAssociation(VERIFICATION_CONTEXT, {
    host: target.host,
    port: target.port,
    callingAet: target.callingAet,
    calledAet: target.aet,
    connectTimeout: target.connectTimeoutMs,
    associationTimeout: target.connectTimeoutMs,
    pduTimeout: target.connectTimeoutMs,
    ...(target.tls ? { tls: target.tls } : {}),
  });
  try {
    await association.accepted;
    const answer = await association.echo();
    if (answer === 'not-accepted') throw new Error('the PACS refused the Verification SOP class');
    return answer.status;
  } catch (e) {
    if (e instanceof AssociationRejectedError) throw new Error(`association rejected (reason ${e.rejection.reason})`);
    const { code, message } = e as NodeJS.ErrnoException;
    throw new Error(code && !message.includes(code) ? `${code}: ${message}` : message);
  } finally {
    await association.release();
  }
}
