// The groups of value representations (PS3.5 6.2) that the reader, the encoder, the engine and the gate share.

/** Explicit VR: these have 2 reserved bytes and a 4-byte length in the element header (PS3.5 7.1.2). */
export const LONG_HEADER_VRS: ReadonlySet<string> = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

/** Character-string VRs (UI included): the value is text, whatever the byte order. */
export const STRING_VRS: ReadonlySet<string> = new Set(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UC', 'UI', 'UR', 'UT']);

/** String VRs whose characters follow Specific Character Set (PS3.5 6.1.2.3); the others are the default repertoire. */
export const CHARSET_VRS: ReadonlySet<string> = new Set(['LO', 'LT', 'PN', 'SH', 'ST', 'UC', 'UT']);
