// Date shifting for the Retain Longitudinal Temporal Information with Modified Dates option: every DA and the
// date part of every DT moves by the patient's offset in whole days, so the order of and the intervals between
// events are kept. TM values stay: a whole-day shift does not change the time of day.

const DAY_MS = 86_400_000;

/** Shifts one DA value (YYYYMMDD; also the old YYYY.MM.DD form). Values that are not dates become empty. */
export function shiftDA(value: string, days: number): string {
  const m = /^(\d{4})\.?(\d{2})\.?(\d{2})$/.exec(value.trim());
  if (!m) return '';
  const t = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  if (Number.isNaN(t)) return '';
  const d = new Date(t + days * DAY_MS);
  const y = d.getUTCFullYear();
  if (y < 1 || y > 9999) return '';
  return `${String(y).padStart(4, '0')}${String(d.getUTCMonth() + 1).padStart(2, '0')}${String(d.getUTCDate()).padStart(2, '0')}`;
}

/** Shifts the date part of a DT value (YYYY[MM[DD[HH…]]][&ZZXX]); a year-only or month-only value shifts by its first day. */
export function shiftDT(value: string, days: number): string {
  const v = value.trim();
  const m = /^(\d{4})(\d{2})?(\d{2})?(.*)$/.exec(v);
  if (!m) return '';
  const shifted = shiftDA(`${m[1]}${m[2] ?? '01'}${m[3] ?? '01'}`, days);
  if (!shifted) return '';
  return shifted + (m[4] ?? '');
}

/** Shifts a DA range (A-B) or a multi-valued DA (A\B) value by value. */
export function shiftDateValue(vr: 'DA' | 'DT', value: string, days: number): string {
  const one = vr === 'DA' ? shiftDA : shiftDT;
  return value
    .split('\\')
    .map((v) => (v.includes('-') && vr === 'DA' ? v.split('-').map((p) => (p ? one(p, days) : '')).join('-') : v ? one(v, days) : ''))
    .join('\\');
}
