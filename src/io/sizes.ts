// Human byte sizes, in transformers' convention ("5GB" = 5·10^9 bytes, "2GiB" = 2·2^30).

const UNITS: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KIB: 2 ** 10,
  MIB: 2 ** 20,
  GIB: 2 ** 30,
  TIB: 2 ** 40,
};

export function parseByteSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? (m[2] || 'B').toUpperCase() : '';
  const factor = UNITS[unit];
  if (!m || factor === undefined) {
    throw new Error(`invalid size "${text}": use a number with a unit, e.g. 5GB, 500MB or 2GiB`);
  }
  const bytes = Math.floor(Number(m[1]) * factor);
  if (bytes <= 0) throw new Error(`invalid size "${text}": must be positive`);
  return bytes;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
