// Two middleman nodes behind one DICOM address (issue 14): HAProxy → 2 nodes, the crosswalk on FerretDB/PostgreSQL,
// the PACS Orthanc on the PostgreSQL index (test/support/cluster.ts). The same new patients reach both nodes at the
// same moment: each gets one alias, every instance is de-identified once, no raw instance is left.
import { expect } from 'chai';
import path from 'node:path';
import { generateStudies } from '../tools/synth/generate.js';
import { storescu } from './support/dcmtk.js';
import { clusterUnavailable, startCluster, type TestCluster } from './support/cluster.js';
import { pacsInventory, waitUntilSettled } from './support/pipeline.js';

describe('cluster: two nodes behind HAProxy, crosswalk on FerretDB/PostgreSQL, PACS on Orthanc/PostgreSQL', function () {
  this.timeout(900_000);
  let cluster: TestCluster | undefined;
  before(async function () {
    const why = clusterUnavailable();
    if (why) {
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    cluster = await startCluster({ nodes: 2 });
  });
  after(async () => {
    await cluster?.stop();
  });

  it('1,000 instances of 100 new patients from 4 senders at once: 100 aliases, each instance de-identified once, 0 raw', async () => {
    const c = cluster!;
    // 100 patients × 10 instances; the senders take every 4th file, so each patient's instances reach both nodes
    const manifest = await generateStudies({ outDir: path.join(c.work, 'in'), patients: 100, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 10, rows: 64, cols: 64, seed: 14_000, modalities: ['CT'] });
    const files = manifest.instances.map((i) => i.path);
    expect(files).to.have.length(1000);
    const senders = 4;
    const t = Date.now();
    const runs = await Promise.all(
      Array.from({ length: senders }, (_, k) => storescu(files.filter((_, i) => i % senders === k), { port: c.port, callingAet: 'MODALITY', calledAet: 'DPHIANT', timeoutMs: 600_000 })),
    );
    const sentSec = (Date.now() - t) / 1000;
    for (const r of runs) expect(r.code, r.stderr.slice(-300)).to.equal(0);
    await Promise.all(c.nodes.map((n) => waitUntilSettled(n.journal, 600_000)));
    const settledSec = (Date.now() - t) / 1000;
    const perNode = c.nodes.map((n) => n.journal.counts());
    const inv = await pacsInventory(c.pacsRest);
    const raw = inv.instances.filter((i) => i.identityRemoved?.toUpperCase() !== 'YES').length;
    const uids = new Set(inv.instances.map((i) => i.sopInstanceUid));
    const aliases = new Set(inv.patients.map((p) => p.patientId));
    console.log(
      `      sent 1000 in ${sentSec.toFixed(1)} s, settled in ${settledSec.toFixed(1)} s (${(1000 / settledSec).toFixed(1)} inst/s); per node DONE ${perNode.map((n) => n.DONE).join(' + ')}, ` +
        `QUARANTINED ${perNode.map((n) => n.QUARANTINED).join(' + ')}, REJECTED ${perNode.map((n) => n.REJECTED).join(' + ')}; PACS: ${inv.instances.length} instances (${uids.size} SOP Instance UIDs), ${raw} raw, ${aliases.size} patients`,
    );
    expect(perNode.every((n) => n.DONE > 0), 'both nodes took instances').to.equal(true);
    expect(perNode.reduce((s, n) => s + n.DONE, 0), 'every instance DONE on one node').to.equal(1000);
    expect(inv.instances.length, 'each instance once').to.equal(1000);
    expect(uids.size).to.equal(1000);
    expect(raw, 'no raw instance left').to.equal(0);
    expect(aliases.size, 'one alias per patient, whichever node saw it first').to.equal(100);
    const originals = new Set(manifest.patients.map((p) => p.patientId));
    for (const a of aliases) expect(originals.has(a), 'no original Patient ID in the PACS').to.equal(false);
  });
});
