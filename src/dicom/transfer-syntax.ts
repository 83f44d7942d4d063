// Transfer syntaxes DPHIANT accepts, forwards and edits. All are passed through as sent, never transcoded.

export const TS = {
  ImplicitVRLittleEndian: '1.2.840.10008.1.2',
  ExplicitVRLittleEndian: '1.2.840.10008.1.2.1',
  DeflatedExplicitVRLittleEndian: '1.2.840.10008.1.2.1.99',
  ExplicitVRBigEndian: '1.2.840.10008.1.2.2',
  JPEGBaseline: '1.2.840.10008.1.2.4.50',
  JPEGExtended: '1.2.840.10008.1.2.4.51',
  JPEGLossless: '1.2.840.10008.1.2.4.57',
  JPEGLosslessSV1: '1.2.840.10008.1.2.4.70',
  JPEGLSLossless: '1.2.840.10008.1.2.4.80',
  JPEGLSNearLossless: '1.2.840.10008.1.2.4.81',
  JPEG2000Lossless: '1.2.840.10008.1.2.4.90',
  JPEG2000: '1.2.840.10008.1.2.4.91',
  RLELossless: '1.2.840.10008.1.2.5',
} as const;

export type TransferSyntaxUid = (typeof TS)[keyof typeof TS];

/** Every transfer syntax the SCP accepts, in the order it prefers when a context proposes several. */
export const ACCEPTED_TRANSFER_SYNTAXES: readonly string[] = [
  TS.ExplicitVRLittleEndian,
  TS.ImplicitVRLittleEndian,
  TS.ExplicitVRBigEndian,
  TS.DeflatedExplicitVRLittleEndian,
  TS.JPEGBaseline,
  TS.JPEGExtended,
  TS.JPEGLossless,
  TS.JPEGLosslessSV1,
  TS.JPEGLSLossless,
  TS.JPEGLSNearLossless,
  TS.JPEG2000Lossless,
  TS.JPEG2000,
  TS.RLELossless,
];

/** How one element's header and value are encoded: what the walker reports and the encoder writes. */
export interface ElementEncoding {
  explicitVR: boolean;
  littleEndian: boolean;
}

/** A whole data set's layout in a transfer syntax. */
export interface Encoding extends ElementEncoding {
  deflated: boolean;
  encapsulated: boolean;
}

/** How a dataset in this transfer syntax is laid out on the wire. */
export function encodingOf(tsUid: string): Encoding {
  switch (tsUid) {
    case TS.ImplicitVRLittleEndian:
      return { explicitVR: false, littleEndian: true, deflated: false, encapsulated: false };
    case TS.ExplicitVRLittleEndian:
      return { explicitVR: true, littleEndian: true, deflated: false, encapsulated: false };
    case TS.DeflatedExplicitVRLittleEndian:
      return { explicitVR: true, littleEndian: true, deflated: true, encapsulated: false };
    case TS.ExplicitVRBigEndian:
      return { explicitVR: true, littleEndian: false, deflated: false, encapsulated: false };
    default:
      if (ACCEPTED_TRANSFER_SYNTAXES.includes(tsUid)) {
        return { explicitVR: true, littleEndian: true, deflated: false, encapsulated: true };
      }
      throw new Error(`unsupported transfer syntax ${tsUid}`);
  }
}
