// A minimal, strict ZIP reader for checkpoint containers (torch.save writes a ZIP since 1.6).
// It reads the central directory (with ZIP64 records and fields), checks each local header
// against it, and hands out entries lazily: stored entries as views into the input, deflated
// ones inflated on first access. CRC-32s are checked on access. Everything malformed becomes a
// CheckpointError whose one-line message starts with the file's name.

import * as zlib from 'node:zlib';
import { CheckpointError } from './checkpoint-error.js';

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate; other methods are refused when the entry is read. */
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;

const EOCD_BYTES = 22;
const ZIP64_LOCATOR_BYTES = 20;
const ZIP64_EOCD_BYTES = 56;
const CENTRAL_BYTES = 46;
const LOCAL_BYTES = 30;
const MAX_COMMENT = 0xffff;
const ZIP64_EXTRA_ID = 0x0001;

const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
const TWO_POW_32 = 2 ** 32;

const FLAG_ENCRYPTED = 0x0001;
const FLAG_STRONG_ENCRYPTION = 0x0040;
const METHOD_STORED = 0;
const METHOD_DEFLATE = 8;

/** True when the bytes start like a ZIP archive (a local file header, or an empty archive). */
export function looksLikeZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b &&
    ((bytes[2] === 3 && bytes[3] === 4) || (bytes[2] === 5 && bytes[3] === 6));
}

export class ZipArchive {
  readonly source: string;
  private readonly bytes: Uint8Array;
  private readonly view: DataView;
  private readonly entries: Map<string, ZipEntry>;
  private readonly cache = new Map<string, Uint8Array>();

  constructor(bytes: Uint8Array, source: string) {
    this.source = source;
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.entries = readCentralDirectory(this.view, (problem) => this.fail(problem));
  }

  /** Entry names in central-directory order. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  entry(name: string): ZipEntry | undefined {
    return this.entries.get(name);
  }

  /**
   * The entry's uncompressed bytes: a view into the input for stored entries (no copy),
   * a fresh buffer for deflated ones. Checked against the CRC-32 once, then cached.
   */
  read(name: string): Uint8Array {
    const cached = this.cache.get(name);
    if (cached) return cached;
    const entry = this.entries.get(name);
    if (!entry) this.fail(`has no entry ${JSON.stringify(name)}`);
    const data = this.extract(entry);
    const crc = crc32(data);
    if (crc !== entry.crc32) {
      this.fail(`entry ${JSON.stringify(name)} fails its CRC-32 check (stored ${hex(entry.crc32)}, computed ${hex(crc)}); the file is corrupt`);
    }
    this.cache.set(name, data);
    return data;
  }

  fail(problem: string): never {
    throw new CheckpointError(`${this.source}: ${problem}`);
  }

  private extract(entry: ZipEntry): Uint8Array {
    const where = `entry ${JSON.stringify(entry.name)}`;
    if (entry.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION)) this.fail(`${where} is encrypted`);
    const start = this.dataStart(entry);
    if (start + entry.compressedSize > this.bytes.length) {
      this.fail(`${where} data (${entry.compressedSize} bytes at ${start}) runs past the end of the ${this.bytes.length}-byte file`);
    }
    const raw = this.bytes.subarray(start, start + entry.compressedSize);
    if (entry.method === METHOD_STORED) {
      if (entry.compressedSize !== entry.uncompressedSize) {
        this.fail(`${where} is stored but its sizes differ (${entry.compressedSize} vs ${entry.uncompressedSize})`);
      }
      return raw;
    }
    if (entry.method === METHOD_DEFLATE) return this.inflate(raw, entry, where);
    this.fail(`${where} uses compression method ${entry.method}; only stored (0) and deflate (8) are supported`);
  }

  private inflate(raw: Uint8Array, entry: ZipEntry, where: string): Uint8Array {
    let out: Buffer;
    try {
      // The limit keeps a corrupt or hostile entry from inflating past its declared size.
      out = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.uncompressedSize) });
    } catch (error) {
      this.fail(`${where} cannot be inflated (${oneLine((error as Error).message)})`);
    }
    if (out.length !== entry.uncompressedSize) {
      this.fail(`${where} inflates to ${out.length} bytes, not the declared ${entry.uncompressedSize}`);
    }
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  }

  /** The local header repeats the name and has its own extra field (torch pads data to 64 bytes there). */
  private dataStart(entry: ZipEntry): number {
    const where = `entry ${JSON.stringify(entry.name)}`;
    const offset = entry.localHeaderOffset;
    if (offset + LOCAL_BYTES > this.bytes.length) this.fail(`${where} local header at ${offset} is past the end of the file`);
    if (this.view.getUint32(offset, true) !== SIG_LOCAL) this.fail(`${where} has no local header signature at ${offset}`);
    const nameLength = this.view.getUint16(offset + 26, true);
    const extraLength = this.view.getUint16(offset + 28, true);
    const nameStart = offset + LOCAL_BYTES;
    if (nameStart + nameLength + extraLength > this.bytes.length) this.fail(`${where} local header runs past the end of the file`);
    const localName = decodeName(this.bytes.subarray(nameStart, nameStart + nameLength));
    if (localName !== entry.name) {
      this.fail(`${where}: local header names ${JSON.stringify(localName)} instead`);
    }
    return nameStart + nameLength + extraLength;
  }
}

export function readZip(bytes: Uint8Array, source: string): ZipArchive {
  return new ZipArchive(bytes, source);
}

/** Every entry as a view or buffer, for callers that want them all at once. */
export function readZipEntries(bytes: Uint8Array, source: string): Map<string, Uint8Array> {
  const zip = readZip(bytes, source);
  return new Map(zip.names().map((name) => [name, zip.read(name)]));
}

type Fail = (problem: string) => never;

interface Directory {
  entryCount: number;
  size: number;
  offset: number;
}

function readCentralDirectory(view: DataView, fail: Fail): Map<string, ZipEntry> {
  const eocd = findEndOfCentralDirectory(view, fail);
  const directory = readDirectoryLocation(view, eocd, fail);
  const entries = new Map<string, ZipEntry>();
  const end = directory.offset + directory.size;
  if (end > view.byteLength) {
    fail(`central directory (${directory.size} bytes at ${directory.offset}) runs past the end of the ${view.byteLength}-byte file`);
  }
  let position = directory.offset;
  for (let i = 0; i < directory.entryCount; i++) {
    const { nextPosition, ...entry } = readCentralEntry(view, position, end, i, fail);
    if (entries.has(entry.name)) fail(`central directory lists ${JSON.stringify(entry.name)} twice`);
    entries.set(entry.name, entry);
    position = nextPosition;
  }
  return entries;
}

/** Searches backwards, since the end record is followed by a comment of up to 65535 bytes. */
function findEndOfCentralDirectory(view: DataView, fail: Fail): number {
  if (view.byteLength < EOCD_BYTES) fail(`is ${view.byteLength} bytes, too short to be a ZIP archive`);
  const lowest = Math.max(0, view.byteLength - EOCD_BYTES - MAX_COMMENT);
  let loose = -1;
  for (let p = view.byteLength - EOCD_BYTES; p >= lowest; p--) {
    if (view.getUint32(p, true) !== SIG_EOCD) continue;
    const commentEnd = p + EOCD_BYTES + view.getUint16(p + 20, true);
    if (commentEnd === view.byteLength) return p;
    // A signature whose comment does not reach exactly to the end may be inside the comment
    // or be followed by junk; keep the last plausible one as a fallback.
    if (loose < 0 && commentEnd < view.byteLength) loose = p;
  }
  if (loose >= 0) return loose;
  fail('has no ZIP end-of-central-directory record (truncated or not a ZIP archive)');
}

function readDirectoryLocation(view: DataView, eocd: number, fail: Fail): Directory {
  const disk = view.getUint16(eocd + 4, true);
  const directoryDisk = view.getUint16(eocd + 6, true);
  const entriesHere = view.getUint16(eocd + 8, true);
  let directory: Directory = {
    entryCount: view.getUint16(eocd + 10, true),
    size: view.getUint32(eocd + 12, true),
    offset: view.getUint32(eocd + 16, true),
  };
  const locator = eocd - ZIP64_LOCATOR_BYTES;
  const hasLocator = locator >= 0 && view.getUint32(locator, true) === SIG_ZIP64_LOCATOR;
  const saturated = directory.entryCount === U16_MAX || directory.size === U32_MAX || directory.offset === U32_MAX;
  if (hasLocator) {
    directory = readZip64End(view, locator, fail);
  } else {
    if (saturated) fail('end record says ZIP64 but there is no ZIP64 end-of-central-directory locator');
    if ((disk !== 0 && disk !== U16_MAX) || (directoryDisk !== 0 && directoryDisk !== U16_MAX)) {
      fail('is a multi-volume ZIP archive, which is not supported');
    }
    if (entriesHere !== directory.entryCount) fail('is a multi-volume ZIP archive, which is not supported');
  }
  return directory;
}

function readZip64End(view: DataView, locator: number, fail: Fail): Directory {
  const totalDisks = view.getUint32(locator + 16, true);
  if (totalDisks > 1) fail('is a multi-volume ZIP archive, which is not supported');
  const record = readU64(view, locator + 8, 'ZIP64 end record offset', fail);
  if (record + ZIP64_EOCD_BYTES > locator) fail(`ZIP64 end record offset ${record} is not before its locator`);
  if (view.getUint32(record, true) !== SIG_ZIP64_EOCD) fail(`has no ZIP64 end-of-central-directory record at ${record}`);
  const disk = view.getUint32(record + 16, true);
  const directoryDisk = view.getUint32(record + 20, true);
  const entriesHere = readU64(view, record + 24, 'ZIP64 entry count', fail);
  const entryCount = readU64(view, record + 32, 'ZIP64 entry count', fail);
  if (disk !== 0 || directoryDisk !== 0 || entriesHere !== entryCount) {
    fail('is a multi-volume ZIP archive, which is not supported');
  }
  return {
    entryCount,
    size: readU64(view, record + 40, 'ZIP64 central directory size', fail),
    offset: readU64(view, record + 48, 'ZIP64 central directory offset', fail),
  };
}

function readCentralEntry(
  view: DataView, position: number, end: number, index: number, fail: Fail,
): ZipEntry & { nextPosition: number } {
  const where = `central directory entry ${index}`;
  if (position + CENTRAL_BYTES > end) fail(`${where} runs past the end of the central directory`);
  if (view.getUint32(position, true) !== SIG_CENTRAL) fail(`${where} at ${position} has no central header signature`);
  const flags = view.getUint16(position + 8, true);
  const method = view.getUint16(position + 10, true);
  const crc = view.getUint32(position + 16, true);
  let compressedSize = view.getUint32(position + 20, true);
  let uncompressedSize = view.getUint32(position + 24, true);
  const nameLength = view.getUint16(position + 28, true);
  const extraLength = view.getUint16(position + 30, true);
  const commentLength = view.getUint16(position + 32, true);
  let localHeaderOffset = view.getUint32(position + 42, true);
  const nameStart = position + CENTRAL_BYTES;
  const extraStart = nameStart + nameLength;
  const nextPosition = extraStart + extraLength + commentLength;
  if (nextPosition > end) fail(`${where} runs past the end of the central directory`);
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  const name = decodeName(bytes.subarray(nameStart, extraStart));

  if (uncompressedSize === U32_MAX || compressedSize === U32_MAX || localHeaderOffset === U32_MAX) {
    const zip64 = findExtraField(view, extraStart, extraStart + extraLength, ZIP64_EXTRA_ID);
    if (zip64 === undefined) fail(`entry ${JSON.stringify(name)} has saturated sizes but no ZIP64 extra field`);
    // The ZIP64 field holds only the saturated values, in this order.
    let p = zip64.start;
    const next = (what: string): number => {
      if (p + 8 > zip64.end) fail(`entry ${JSON.stringify(name)} ZIP64 extra field is too short for its ${what}`);
      const value = readU64(view, p, `entry ${JSON.stringify(name)} ${what}`, fail);
      p += 8;
      return value;
    };
    if (uncompressedSize === U32_MAX) uncompressedSize = next('uncompressed size');
    if (compressedSize === U32_MAX) compressedSize = next('compressed size');
    if (localHeaderOffset === U32_MAX) localHeaderOffset = next('local header offset');
  }
  return { name, method, flags, crc32: crc, compressedSize, uncompressedSize, localHeaderOffset, nextPosition };
}

function findExtraField(view: DataView, start: number, end: number, id: number): { start: number; end: number } | undefined {
  let p = start;
  while (p + 4 <= end) {
    const fieldId = view.getUint16(p, true);
    const size = view.getUint16(p + 2, true);
    if (p + 4 + size > end) return undefined;
    if (fieldId === id) return { start: p + 4, end: p + 4 + size };
    p += 4 + size;
  }
  return undefined;
}

function readU64(view: DataView, offset: number, what: string, fail: Fail): number {
  if (offset < 0 || offset + 8 > view.byteLength) fail(`${what} at ${offset} is past the end of the file`);
  const value = view.getUint32(offset, true) + view.getUint32(offset + 4, true) * TWO_POW_32;
  if (!Number.isSafeInteger(value)) fail(`${what} (${value}) is beyond 2^53`);
  return value;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const latin1 = new TextDecoder('latin1');

/** Names are UTF-8 in practice (torch writes ASCII); anything else is read as Latin-1. */
function decodeName(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    return latin1.decode(bytes);
  }
}

function hex(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

let crcTable: Uint32Array | undefined;

/** zlib's CRC-32 (Node >= 20.15), or a table-driven one on older runtimes. */
export function crc32(data: Uint8Array): number {
  const native = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;
  if (typeof native === 'function') return native(data) >>> 0;
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = crcTable[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
