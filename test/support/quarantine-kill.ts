// A process that dies by kill -9 between sealing a raw instance in the quarantine and deleting it from the PACS:
// what the worker does when it quarantines, cut where a crash would cut it (test/reconciler.test.ts).
//   node dist/test/support/quarantine-kill.js <dataDir> <pacsUrl> <jobId>
// The data directory's development keys are used (the test middleman's configuration).
import { devKeyPath, readKeyFile } from '../../src/keys.js';
import { DevOrthanc } from '../../tools/devstack/orthanc-rest.js';
import { Journal, journalPath } from '../../src/pipeline/journal.js';
import { Quarantine, quarantineDir } from '../../src/pipeline/quarantine.js';

const [dataDir, pacsUrl, jobArg] = process.argv.slice(2);
if (!dataDir || !pacsUrl || !jobArg) throw new Error('usage: quarantine-kill <dataDir> <pacsUrl> <jobId>');
const journal = new Journal(journalPath(dataDir), readKeyFile(devKeyPath(dataDir, 'site')));
const job = journal.get(Number(jobArg));
if (!job?.rawId) throw new Error(`job ${jobArg} has no raw copy`);
const pacs = new DevOrthanc({ url: pacsUrl, username: 'demo', password: 'demo' });
const bytes = await pacs.instanceFile(job.rawId);
new Quarantine(quarantineDir(dataDir), readKeyFile(devKeyPath(dataDir, 'crosswalk'))).put(job.id, bytes);
console.log(`sealed job ${job.id}`);
// the crash: sealed, but the raw copy not yet deleted and the job not yet QUARANTINED
process.kill(process.pid, 'SIGKILL');
