// A 5×7 bitmap font (uppercase, digits and the separators burned-in overlays use), drawn scaled so OCR can read
// it: synthetic burned-in text needs no font file and renders the same everywhere.
import type { GreyImage } from '../../src/anonymize/pixels/types.js';

export const GLYPH_WIDTH = 5;
export const GLYPH_HEIGHT = 7;
/** Columns between glyphs, in font pixels. */
const SPACING = 1;

// Each glyph: 7 rows of 5 columns, '#' set.
const GLYPHS: Record<string, string> = {
  A: '.###. #...# #...# ##### #...# #...# #...#',
  B: '####. #...# #...# ####. #...# #...# ####.',
  C: '.###. #...# #.... #.... #.... #...# .###.',
  D: '####. #...# #...# #...# #...# #...# ####.',
  E: '##### #.... #.... ####. #.... #.... #####',
  F: '##### #.... #.... ####. #.... #.... #....',
  G: '.###. #...# #.... #.### #...# #...# .####',
  H: '#...# #...# #...# ##### #...# #...# #...#',
  I: '.###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.',
  J: '..### ...#. ...#. ...#. ...#. #..#. .##..',
  K: '#...# #..#. #.#.. ##... #.#.. #..#. #...#',
  L: '#.... #.... #.... #.... #.... #.... #####',
  M: '#...# ##.## #.#.# #.#.# #...# #...# #...#',
  N: '#...# #...# ##..# #.#.# #..## #...# #...#',
  O: '.###. #...# #...# #...# #...# #...# .###.',
  P: '####. #...# #...# ####. #.... #.... #....',
  Q: '.###. #...# #...# #...# #.#.# #..#. .##.#',
  R: '####. #...# #...# ####. #.#.. #..#. #...#',
  S: '.#### #.... #.... .###. ....# ....# ####.',
  T: '##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..',
  U: '#...# #...# #...# #...# #...# #...# .###.',
  V: '#...# #...# #...# #...# #...# .#.#. ..#..',
  W: '#...# #...# #...# #.#.# #.#.# #.#.# .#.#.',
  X: '#...# #...# .#.#. ..#.. .#.#. #...# #...#',
  Y: '#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..',
  Z: '##### ....# ...#. ..#.. .#... #.... #####',
  '0': '.###. #...# #..## #.#.# ##..# #...# .###.',
  '1': '..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.',
  '2': '.###. #...# ....# ...#. ..#.. .#... #####',
  '3': '##### ...#. ..#.. ...#. ....# #...# .###.',
  '4': '...#. ..##. .#.#. #..#. ##### ...#. ...#.',
  '5': '##### #.... ####. ....# ....# #...# .###.',
  '6': '..##. .#... #.... ####. #...# #...# .###.',
  '7': '##### ....# ...#. ..#.. .#... .#... .#...',
  '8': '.###. #...# #...# .###. #...# #...# .###.',
  '9': '.###. #...# #...# .#### ....# ...#. .##..',
  '^': '..#.. .#.#. #...# ..... ..... ..... .....',
  '-': '..... ..... ..... ##### ..... ..... .....',
  '/': '..... ....# ...#. ..#.. .#... #.... .....',
  '.': '..... ..... ..... ..... ..... .##.. .##..',
  ':': '..... .##.. .##.. ..... .##.. .##.. .....',
  ' ': '..... ..... ..... ..... ..... ..... .....',
};

const BITMAPS = new Map<string, boolean[][]>(
  Object.entries(GLYPHS).map(([ch, rows]) => [ch, rows.split(' ').map((row) => [...row].map((c) => c === '#'))]),
);

/** Whether every character of `text` has a glyph (the font is uppercase only). */
export function drawable(text: string): boolean {
  return [...text].every((c) => BITMAPS.has(c));
}

/** Width and height in image pixels of `text` drawn at `scale`. */
export function textSize(text: string, scale: number): { w: number; h: number } {
  const n = [...text].length;
  return { w: n === 0 ? 0 : (n * (GLYPH_WIDTH + SPACING) - SPACING) * scale, h: GLYPH_HEIGHT * scale };
}

/** Draws `text` with its top left at (x, y), each font pixel a scale×scale square of `value`; clipped to the image. */
export function drawText(img: GreyImage, text: string, x: number, y: number, scale: number, value: number): void {
  let penX = x;
  for (const ch of text) {
    const bitmap = BITMAPS.get(ch);
    if (!bitmap) throw new Error(`the synthetic font has no glyph for character code ${ch.codePointAt(0)}`);
    bitmap.forEach((row, gy) => row.forEach((on, gx) => {
      if (!on) return;
      for (let dy = 0; dy < scale; dy++) {
        const py = y + gy * scale + dy;
        if (py < 0 || py >= img.height) continue;
        for (let dx = 0; dx < scale; dx++) {
          const px = penX + gx * scale + dx;
          if (px >= 0 && px < img.width) img.pixels[py * img.width + px] = value;
        }
      }
    }));
    penX += (GLYPH_WIDTH + SPACING) * scale;
  }
}
