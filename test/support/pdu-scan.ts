// PDU headers in a DICOM upper-layer byte stream (PS3.8 9.3: type, reserved, 4-byte length), found chunk by chunk
// without buffering the PDUs' data: for proxies that count or record what goes through them.
export function pduHeaders(onPdu: (type: number, length: number) => void): (chunk: Buffer) => void {
  let header = Buffer.alloc(0);
  let skip = 0;
  return (chunk) => {
    for (let off = 0; off < chunk.length; ) {
      if (skip > 0) {
        const n = Math.min(skip, chunk.length - off);
        skip -= n;
        off += n;
        continue;
      }
      const n = Math.min(6 - header.length, chunk.length - off);
      header = Buffer.concat([header, chunk.subarray(off, off + n)]);
      off += n;
      if (header.length < 6) continue;
      skip = header.readUInt32BE(2);
      onPdu(header[0]!, skip);
      header = Buffer.alloc(0);
    }
  };
}
