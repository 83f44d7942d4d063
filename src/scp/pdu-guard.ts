// Watches the framing of an incoming connection beside dcmjs-dimse, which keeps in memory whatever it has not
// finished: a PDU of any declared length (a 4 GB header would exhaust memory), command fragments never marked last,
// and data fragments that belong to no C-STORE (only a C-STORE's data set goes to a spool file). Before the
// association is accepted only an A-ASSOCIATE-RQ of bounded size, an A-RELEASE-RQ or an A-ABORT may come
// (PS3.8 9.2: anything else there is a protocol error), so a connection that never associates costs little.
// Calls `violation` once and stops watching.
import type { Socket } from 'node:net';

const PDU_TYPES = new Set([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07]);
const P_DATA_TF = 0x04;
const A_ASSOCIATE_RQ = 0x01;
const A_RELEASE_RQ = 0x05;
const A_ABORT = 0x07;
/**
 * The largest A-ASSOCIATE-RQ taken. Measured with DCMTK storescu 3.6.7 proposing the most it can (128
 * presentation contexts, the PS3.8 maximum): 9,609 bytes by default, 11,273 with -xs; with a configuration
 * proposing all 13 transfer syntaxes DPHIANT accepts in each context 46,774; with all 40 transfer syntaxes of
 * PS3.5 in each 141,238 (no real sender proposes that). 256 KiB is above all of them.
 */
export const MAX_ASSOCIATE_RQ_BYTES = 256 * 1024;
/** A-RELEASE-RQ and A-ABORT bodies are 4 reserved/reason bytes (PS3.8 9.3.6, 9.3.8). */
const FIXED_BODY_BYTES = 4;
/** A DIMSE command is a few hundred bytes; this is generous. */
const MAX_COMMAND_BYTES = 64 * 1024;

export class PduGuard {
  private header = Buffer.alloc(6);
  private headerFill = 0;
  /** Bytes of the current PDU body still to come. */
  private remaining = 0;
  private inPData = false;
  /** Current PDV item header (4-byte length, context id, control header) being read, and its data still to come. */
  private pdv = Buffer.alloc(6);
  private pdvFill = 0;
  private pdvRemaining = 0;
  private pdvIsCommand = false;
  private pdvLast = false;
  /** The command being received (bounded), and what the last complete one said about a data set. */
  private command: Buffer[] = [];
  private commandBytes = 0;
  private dataExpected = false;
  private done = false;
  /** Set once the A-ASSOCIATE-AC went out: from then on every PDU type may come, up to maxPduLength. */
  private associated = false;

  constructor(
    socket: Socket,
    private readonly maxPduLength: number,
    private readonly violation: (why: string) => void,
  ) {
    socket.on('data', (chunk: Buffer) => this.scan(chunk));
  }

  /** The association was accepted. */
  accepted(): void {
    this.associated = true;
  }

  private scan(chunk: Buffer): void {
    let off = 0;
    while (!this.done && off < chunk.length) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - off);
        if (this.inPData) this.scanPdvs(chunk.subarray(off, off + n));
        this.remaining -= n;
        off += n;
        continue;
      }
      const n = Math.min(6 - this.headerFill, chunk.length - off);
      chunk.copy(this.header, this.headerFill, off, off + n);
      this.headerFill += n;
      off += n;
      if (this.headerFill < 6) return;
      this.headerFill = 0;
      const type = this.header[0]!;
      const length = this.header.readUInt32BE(2);
      if (!PDU_TYPES.has(type)) return this.fail(`unknown PDU type 0x${type.toString(16)}`);
      if (!this.associated) {
        const why = beforeAssociation(type, length);
        if (why) return this.fail(why);
      } else if (type === A_ASSOCIATE_RQ) return this.fail('A-ASSOCIATE-RQ on an associated connection');
      else if (length > this.maxPduLength) return this.fail(`PDU length ${length} over ${this.maxPduLength}`);
      this.remaining = length;
      this.inPData = type === P_DATA_TF;
      this.pdvFill = 0;
      this.pdvRemaining = 0;
    }
  }

  /** PDV items inside a P-DATA-TF body (they may be split across chunks). */
  private scanPdvs(body: Buffer): void {
    let off = 0;
    while (!this.done && off < body.length) {
      if (this.pdvRemaining > 0) {
        const n = Math.min(this.pdvRemaining, body.length - off);
        if (this.pdvIsCommand) this.commandData(body.subarray(off, off + n));
        this.pdvRemaining -= n;
        off += n;
        if (this.pdvRemaining === 0) this.pdvEnded();
        continue;
      }
      const n = Math.min(6 - this.pdvFill, body.length - off);
      body.copy(this.pdv, this.pdvFill, off, off + n);
      this.pdvFill += n;
      off += n;
      if (this.pdvFill < 6) return;
      this.pdvFill = 0;
      const itemLength = this.pdv.readUInt32BE(0);
      if (itemLength < 2) return this.fail('PDV item shorter than its header');
      const control = this.pdv[5]!;
      this.pdvIsCommand = (control & 0x01) === 1;
      this.pdvLast = (control & 0x02) === 2;
      this.pdvRemaining = itemLength - 2;
      if (!this.pdvIsCommand && !this.dataExpected) return this.fail('data set fragment without a command that announced one');
      if (this.pdvRemaining === 0) this.pdvEnded();
    }
  }

  private commandData(bytes: Buffer): void {
    this.commandBytes += bytes.length;
    if (this.commandBytes > MAX_COMMAND_BYTES) return this.fail(`command over ${MAX_COMMAND_BYTES} bytes`);
    this.command.push(Buffer.from(bytes));
  }

  private pdvEnded(): void {
    if (this.pdvIsCommand && this.pdvLast) {
      this.dataExpected = hasDataSet(Buffer.concat(this.command));
      this.command = [];
      this.commandBytes = 0;
    } else if (!this.pdvIsCommand && this.pdvLast) {
      this.dataExpected = false;
    }
  }

  private fail(why: string): void {
    this.done = true;
    this.violation(why);
  }
}

/** Why a PDU may not come before the association is accepted, or null. */
function beforeAssociation(type: number, length: number): string | null {
  if (type === A_ASSOCIATE_RQ) return length > MAX_ASSOCIATE_RQ_BYTES ? `A-ASSOCIATE-RQ length ${length} over ${MAX_ASSOCIATE_RQ_BYTES}` : null;
  if (type === A_RELEASE_RQ || type === A_ABORT) return length > FIXED_BODY_BYTES ? `PDU type 0x0${type} length ${length} before association` : null;
  return `PDU type 0x0${type} before association`;
}

/** Whether a command (implicit VR little endian) announces a data set: CommandDataSetType (0000,0800) ≠ 0x0101. */
function hasDataSet(command: Buffer): boolean {
  for (let p = 0; p + 8 <= command.length; ) {
    const tag = ((command.readUInt16LE(p) << 16) | command.readUInt16LE(p + 2)) >>> 0;
    const length = command.readUInt32LE(p + 4);
    if (tag === 0x00000800 && length === 2 && p + 10 <= command.length) return command.readUInt16LE(p + 8) !== 0x0101;
    p += 8 + length;
  }
  return false;
}
