// Shapes shared by the burned-in text steps: the image geometry read from the header, frames decoded to native
// pixels, rectangles to blank, and the one error that sends an at-risk instance to the quarantine.
import type { Element } from '../../dicom/writer.js';

/** A rectangle in one frame's pixel coordinates (0,0 top left), clipped to the frame by whoever blanks it. */
export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** What the Image Pixel module says about the pixel data (PS3.3 C.7.6.3). */
export interface ImageGeometry {
  rows: number;
  columns: number;
  samplesPerPixel: number;
  bitsAllocated: number;
  bitsStored: number;
  pixelRepresentation: number;
  /** 0 interleaved, 1 planar (colour only). */
  planarConfiguration: number;
  photometric: string;
  frames: number;
}

/** One frame as an 8-bit grey image for OCR: rows × columns bytes, dark text on a light background or the reverse. */
export interface GreyImage {
  width: number;
  height: number;
  pixels: Uint8Array;
}

/** The cleaned pixel data, ready for the engine to write in place of the input's. */
export interface CleanedPixels {
  /** The whole Pixel Data element (header and value) in the data set's encoding, as chunks. */
  pixelData: Uint8Array[];
  /** The transfer syntax of the output: the input's, or the documented lossless one when no encoder keeps it. */
  transferSyntaxUid: string;
  /** Top-level attributes the new encoding changes (Photometric Interpretation, Planar Configuration…). */
  attributes: Element[];
  /** Boxes blanked, over all frames. */
  boxes: number;
}

/** The step of the burned-in text handling that could not make an instance safe. */
export type PixelStep = 'gate' | 'document' | 'codec' | 'mask' | 'ocr' | 'clean';

/**
 * An at-risk instance that cannot be cleaned: the pipeline quarantines it, `dphiant anonymize` rejects it. The
 * message names the step and counts, never the text read.
 */
export class PixelRiskError extends Error {
  constructor(readonly step: PixelStep, message: string) {
    super(`burned-in text (${step}): ${message}`);
    this.name = 'PixelRiskError';
  }
}
