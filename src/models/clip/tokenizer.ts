/**
 * OpenAI CLIP's byte-level BPE tokenizer (clip/simple_tokenizer.py + clip.tokenize), reproduced token for token.
 *
 * The reference cleans text with `ftfy.fix_text`, then `html.unescape` twice, collapses whitespace and
 * lower-cases. We cannot depend on ftfy, so `fixText` below emulates the ftfy 6 fixes that change real prompts:
 * HTML entities (when the text has no '<'), mojibake (UTF-8 read as Latin-1/Windows-1252, e.g. "cafÃ©" or
 * "donâ€™t"), C1 controls read as Windows-1252, Latin ligatures (ﬁ → fi), full-/half-width forms, curly quotes,
 * line breaks, terminal escapes, control characters and NFC. ftfy decides whether text is mojibake with a
 * "badness" heuristic; we instead only decode sequences that form valid multi-byte UTF-8 when read back as
 * Windows-1252 bytes, which agrees with ftfy on ordinary prompts and on common mojibake.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

export const SOT_TOKEN = 49406;
export const EOT_TOKEN = 49407;
export const CONTEXT_LENGTH = 77;

/** Thrown when a text needs more than `contextLength` tokens and truncation was not asked for. */
export class TextTooLongError extends Error {
  constructor(
    readonly text: string,
    readonly tokenCount: number,
    readonly contextLength: number,
  ) {
    super(
      `text is too long for CLIP's context of ${contextLength} tokens (${tokenCount} including start/end): ` +
        `"${text.length > 80 ? `${text.slice(0, 77)}...` : text}"; shorten it or truncate it`,
    );
    this.name = 'TextTooLongError';
  }
}

/**
 * The package root (the folder holding package.json), found by walking up from a module URL, so shipped
 * assets resolve both from src/ under tsx and from the compiled dist/.
 */
function packageRoot(from: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(from));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(from)}`);
    dir = up;
  }
}

export function defaultBpePath(): string {
  return join(packageRoot(), 'assets', 'bpe_simple_vocab_16e6.txt.gz');
}

// ---------------------------------------------------------------------------------------------------------
// Python's html.unescape

// HTML 4 entities (Python's html.entities.name2codepoint), name:hex code point. Python uses the full HTML5
// table (2231 names); these cover what appears in practice, and unknown names stay literal in both.
const HTML4 =
  'AElig:c6 Aacute:c1 Acirc:c2 Agrave:c0 Alpha:391 Aring:c5 Atilde:c3 Auml:c4 Beta:392 Ccedil:c7 Chi:3a7 ' +
  'Dagger:2021 Delta:394 ETH:d0 Eacute:c9 Ecirc:ca Egrave:c8 Epsilon:395 Eta:397 Euml:cb Gamma:393 Iacute:cd ' +
  'Icirc:ce Igrave:cc Iota:399 Iuml:cf Kappa:39a Lambda:39b Mu:39c Ntilde:d1 Nu:39d OElig:152 Oacute:d3 ' +
  'Ocirc:d4 Ograve:d2 Omega:3a9 Omicron:39f Oslash:d8 Otilde:d5 Ouml:d6 Phi:3a6 Pi:3a0 Prime:2033 Psi:3a8 ' +
  'Rho:3a1 Scaron:160 Sigma:3a3 THORN:de Tau:3a4 Theta:398 Uacute:da Ucirc:db Ugrave:d9 Upsilon:3a5 Uuml:dc ' +
  'Xi:39e Yacute:dd Yuml:178 Zeta:396 aacute:e1 acirc:e2 acute:b4 aelig:e6 agrave:e0 alefsym:2135 alpha:3b1 ' +
  'amp:26 and:2227 ang:2220 aring:e5 asymp:2248 atilde:e3 auml:e4 bdquo:201e beta:3b2 brvbar:a6 bull:2022 ' +
  'cap:2229 ccedil:e7 cedil:b8 cent:a2 chi:3c7 circ:2c6 clubs:2663 cong:2245 copy:a9 crarr:21b5 cup:222a ' +
  'curren:a4 dArr:21d3 dagger:2020 darr:2193 deg:b0 delta:3b4 diams:2666 divide:f7 eacute:e9 ecirc:ea ' +
  'egrave:e8 empty:2205 emsp:2003 ensp:2002 epsilon:3b5 equiv:2261 eta:3b7 eth:f0 euml:eb euro:20ac ' +
  'exist:2203 fnof:192 forall:2200 frac12:bd frac14:bc frac34:be frasl:2044 gamma:3b3 ge:2265 gt:3e hArr:21d4 ' +
  'harr:2194 hearts:2665 hellip:2026 iacute:ed icirc:ee iexcl:a1 igrave:ec image:2111 infin:221e int:222b ' +
  'iota:3b9 iquest:bf isin:2208 iuml:ef kappa:3ba lArr:21d0 lambda:3bb lang:2329 laquo:ab larr:2190 ' +
  'lceil:2308 ldquo:201c le:2264 lfloor:230a lowast:2217 loz:25ca lrm:200e lsaquo:2039 lsquo:2018 lt:3c ' +
  'macr:af mdash:2014 micro:b5 middot:b7 minus:2212 mu:3bc nabla:2207 nbsp:a0 ndash:2013 ne:2260 ni:220b ' +
  'not:ac notin:2209 nsub:2284 ntilde:f1 nu:3bd oacute:f3 ocirc:f4 oelig:153 ograve:f2 oline:203e omega:3c9 ' +
  'omicron:3bf oplus:2295 or:2228 ordf:aa ordm:ba oslash:f8 otilde:f5 otimes:2297 ouml:f6 para:b6 part:2202 ' +
  'permil:2030 perp:22a5 phi:3c6 pi:3c0 piv:3d6 plusmn:b1 pound:a3 prime:2032 prod:220f prop:221d psi:3c8 ' +
  'quot:22 rArr:21d2 radic:221a rang:232a raquo:bb rarr:2192 rceil:2309 rdquo:201d real:211c reg:ae ' +
  'rfloor:230b rho:3c1 rlm:200f rsaquo:203a rsquo:2019 sbquo:201a scaron:161 sdot:22c5 sect:a7 shy:ad ' +
  'sigma:3c3 sigmaf:3c2 sim:223c spades:2660 sub:2282 sube:2286 sum:2211 sup:2283 sup1:b9 sup2:b2 sup3:b3 ' +
  'supe:2287 szlig:df tau:3c4 there4:2234 theta:3b8 thetasym:3d1 thinsp:2009 thorn:fe tilde:2dc times:d7 ' +
  'trade:2122 uArr:21d1 uacute:fa uarr:2191 ucirc:fb ugrave:f9 uml:a8 upsih:3d2 upsilon:3c5 uuml:fc ' +
  'weierp:2118 xi:3be yacute:fd yen:a5 yuml:ff zeta:3b6 zwj:200d zwnj:200c apos:27 AMP:26 COPY:a9 GT:3e ' +
  'LT:3c QUOT:22 REG:ae';

/** Python's html.entities.html5 restricted to HTML4 + a few HTML5 names: keys with and without ';'. */
const HTML5: Map<string, string> = (() => {
  const m = new Map<string, string>();
  for (const item of HTML4.split(' ')) {
    const [name, hex] = item.split(':');
    const ch = String.fromCodePoint(Number.parseInt(hex, 16));
    m.set(`${name};`, ch);
    // HTML5's legacy names that also parse without a semicolon: Latin-1 ones plus a few markup ones.
    const cp = ch.codePointAt(0)!;
    if (
      (cp >= 0xa0 && cp <= 0xff) ||
      ['amp', 'lt', 'gt', 'quot', 'AMP', 'COPY', 'GT', 'LT', 'QUOT', 'REG'].includes(name)
    )
      m.set(name, ch);
  }
  return m;
})();

// Python's html._invalid_charrefs: numeric references the HTML5 spec remaps (Windows-1252 for 0x80-0x9F).
const CP1252_HIGH =
  '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f' +
  '\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178';

function invalidCodepoint(n: number): boolean {
  return (
    (n >= 0x1 && n <= 0x8) ||
    n === 0xb ||
    (n >= 0xe && n <= 0x1f) ||
    (n >= 0x7f && n <= 0x9f) ||
    (n >= 0xfdd0 && n <= 0xfdef) ||
    (n & 0xfffe) === 0xfffe
  );
}

function numericCharref(n: number): string {
  if (n === 0) return '\ufffd';
  if (n === 0x0d) return '\r';
  if (n >= 0x80 && n <= 0x9f) return CP1252_HIGH[n - 0x80];
  if ((n >= 0xd800 && n <= 0xdfff) || n > 0x10ffff) return '\ufffd';
  if (invalidCodepoint(n)) return '';
  return String.fromCodePoint(n);
}

const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

/** Python's `html.unescape`, including its longest-prefix rule for legacy names without ';' ("&copyx" → "©x"). */
export function htmlUnescape(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(CHARREF, (_m, ref: string) => {
    if (ref[0] === '#') {
      const hex = ref[1] === 'x' || ref[1] === 'X';
      const digits = ref.slice(hex ? 2 : 1).replace(/;$/, '');
      return numericCharref(Number.parseInt(digits, hex ? 16 : 10));
    }
    const named = HTML5.get(ref);
    if (named !== undefined) return named;
    const cps = Array.from(ref);
    for (let x = cps.length - 1; x > 1; x--) {
      const hit = HTML5.get(cps.slice(0, x).join(''));
      if (hit !== undefined) return hit + cps.slice(x).join('');
    }
    return `&${ref}`;
  });
}

// ---------------------------------------------------------------------------------------------------------
// ftfy.fix_text emulation (ftfy 6 defaults)

const FTFY_ENTITY = /&#?[0-9A-Za-z]{1,24};/g;

/** ftfy's unescape_html: only ';'-terminated references, plus upper-cased names ("&EACUTE;" → "É"). */
function ftfyUnescapeHtml(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(FTFY_ENTITY, (m) => {
    const name = m.slice(1);
    if (name[0] !== '#') {
      const hit = HTML5.get(name);
      if (hit !== undefined && name.endsWith(';')) return hit;
      const lower = name.toLowerCase();
      if (name === name.toUpperCase() && !HTML5.has(name) && HTML5.has(lower))
        return HTML5.get(lower)!.toUpperCase();
      return m;
    }
    const u = htmlUnescape(m);
    return u.includes(';') ? m : u;
  });
}

/** Byte that a character stands for in Latin-1 ∪ "sloppy" Windows-1252, or -1. */
function sloppyByte(cp: number): number {
  if (cp < 0x100) return cp;
  const i = CP1252_HIGH.indexOf(String.fromCharCode(cp));
  return cp <= 0xffff && i >= 0 ? 0x80 + i : -1;
}

const CONT = `\\x80-\\xbf${CP1252_HIGH.replace(/[\x80-\x9f]/g, '')}`;
const MOJIBAKE = new RegExp(
  `[\\xc2-\\xdf][${CONT}]|[\\xe0-\\xef][${CONT}]{2}|[\\xf0-\\xf4][${CONT}]{3}`,
  'g',
);
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

function fixMojibake(text: string): string {
  return text.replace(MOJIBAKE, (m) => {
    const bytes = Uint8Array.from(m, (c) => sloppyByte(c.charCodeAt(0)));
    try {
      return utf8Strict.decode(bytes);
    } catch {
      return m;
    }
  });
}

function fixC1Controls(text: string): string {
  return text.replace(/[\x80-\x9f]/g, (c) => CP1252_HIGH[c.charCodeAt(0) - 0x80]);
}

const LIGATURES: Record<string, string> = {
  Ĳ: 'IJ',
  ĳ: 'ij',
  ŉ: 'ʼn',
  Ǳ: 'DZ',
  ǲ: 'Dz',
  ǳ: 'dz',
  Ǆ: 'DŽ',
  ǅ: 'Dž',
  ǆ: 'dž',
  Ǉ: 'LJ',
  ǈ: 'Lj',
  ǉ: 'lj',
  Ǌ: 'NJ',
  ǋ: 'Nj',
  ǌ: 'nj',
  ﬀ: 'ff',
  ﬁ: 'fi',
  ﬂ: 'fl',
  ﬃ: 'ffi',
  ﬄ: 'ffl',
  ﬅ: 'ſt',
  ﬆ: 'st',
};
const LIGATURE_RE = new RegExp(`[${Object.keys(LIGATURES).join('')}]`, 'g');

// ftfy's WIDTH_MAP: U+FF01..U+FFEF whose NFKC form is one other character, plus the ideographic space.
const WIDTH_MAP: Map<string, string> = (() => {
  const m = new Map<string, string>([['\u3000', ' ']]);
  for (let i = 0xff01; i < 0xfff0; i++) {
    const c = String.fromCharCode(i);
    const alt = c.normalize('NFKC');
    if (alt !== c && Array.from(alt).length === 1) m.set(c, alt);
  }
  return m;
})();

// biome-ignore lint/suspicious/noControlCharactersInRegex: ftfy removes exactly these control characters
const CONTROL_RE = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escape sequences start with ESC
const ANSI_RE = /\x1b\[[\d;]*[a-zA-Z]/g;

/** What `ftfy.fix_text` does to a prompt, to the extent documented at the top of this file. */
export function fixText(text: string): string {
  const unescapeHtml = !text.includes('<');
  for (let iter = 0; iter < 16; iter++) {
    const orig = text;
    if (unescapeHtml) text = ftfyUnescapeHtml(text);
    if (/[\u0080-\uffff]/.test(text)) text = fixMojibake(text);
    text = fixC1Controls(text);
    text = text.replace(LIGATURE_RE, (c) => LIGATURES[c]);
    text = text.replace(/[\u3000\uff01-\uffef]/g, (c) => WIDTH_MAP.get(c) ?? c);
    text = text.replace(/[\u02bc\u2018-\u201b]/g, "'").replace(/[\u201c-\u201f]/g, '"');
    text = text.replace(/\r\n/g, '\n').replace(/[\r\u2028\u2029\x85]/g, '\n');
    text = text.replace(ANSI_RE, '').replace(CONTROL_RE, '');
    text = text.normalize('NFC');
    if (text === orig) break;
  }
  return text;
}

// The `regex` module's \s is Unicode White_Space; JS's \s differs (it has U+FEFF, lacks U+0085).
const WS_RUN = /\p{White_Space}+/gu;
// Python's strip() also drops U+001C..U+001F, but fixText has removed those already.
const PY_STRIP = /^\p{White_Space}+|\p{White_Space}+$/gu;

function basicClean(text: string): string {
  return htmlUnescape(htmlUnescape(fixText(text))).replace(PY_STRIP, '');
}

function whitespaceClean(text: string): string {
  return text.replace(WS_RUN, ' ').replace(PY_STRIP, '');
}

const PRE_SPLIT =
  /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\p{White_Space}\p{L}\p{N}]+/giu;

/**
 * GPT-2's reversible byte → printable character table, as [byte, char] pairs in the reference's dict order
 * (printable bytes first, then the rest mapped to U+0100…): that order is the order of the first 256 ids.
 */
export function bytesToUnicode(): [number, string][] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const pairs: [number, string][] = bs.map((b) => [b, String.fromCharCode(b)]);
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) pairs.push([b, String.fromCharCode(256 + n++)]);
  return pairs;
}

export interface TokenizeOptions {
  /** CLIP's context; every released model uses 77. */
  contextLength?: number;
  /** Cut long texts to the context and end them with EOT instead of throwing TextTooLongError. */
  truncate?: boolean;
}

export class ClipTokenizer {
  readonly vocabSize: number;
  private readonly byteEncoder: string[];
  private readonly byteDecoder = new Map<string, number>();
  private readonly encoder = new Map<string, number>();
  private readonly decoder: string[];
  private readonly ranks = new Map<string, number>();
  private readonly cache = new Map<string, number[]>();

  /** `gzippedMerges`: the contents of bpe_simple_vocab_16e6.txt.gz. */
  constructor(gzippedMerges: Uint8Array) {
    const table = bytesToUnicode();
    this.byteEncoder = new Array<string>(256);
    for (const [b, c] of table) {
      this.byteEncoder[b] = c;
      this.byteDecoder.set(c, b);
    }
    const lines = gunzipSync(gzippedMerges).toString('utf8').split('\n');
    // The file's first line is a version header; the reference keeps exactly 49152-256-2 merges.
    const merges = lines.slice(1, 49152 - 256 - 2 + 1).map((l) => l.split(' '));
    const vocab = [...table.map(([, c]) => c), ...table.map(([, c]) => `${c}</w>`)];
    merges.forEach(([a, b], i) => {
      this.ranks.set(`${a} ${b}`, i);
      vocab.push(a + b);
    });
    vocab.push('<|startoftext|>', '<|endoftext|>');
    for (let i = 0; i < vocab.length; i++) this.encoder.set(vocab[i], i);
    this.decoder = vocab;
    this.vocabSize = vocab.length;
    this.cache.set('<|startoftext|>', [SOT_TOKEN]);
    this.cache.set('<|endoftext|>', [EOT_TOKEN]);
  }

  static fromFile(path: string = defaultBpePath()): ClipTokenizer {
    return new ClipTokenizer(readFileSync(path));
  }

  /** BPE of one pre-split, byte-encoded word, as token ids; memoized like the reference's `cache`. */
  private bpe(token: string): number[] {
    const hit = this.cache.get(token);
    if (hit) return hit;
    const word = Array.from(token);
    word[word.length - 1] += '</w>';
    while (word.length > 1) {
      let best = -1;
      let bestRank = Number.POSITIVE_INFINITY;
      for (let i = 0; i < word.length - 1; i++) {
        const r = this.ranks.get(`${word[i]} ${word[i + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      const first = word[best];
      const second = word[best + 1];
      // Merge every occurrence left to right, as the reference's scan over `word.index(first, i)` does.
      const merged: string[] = [];
      for (let i = 0; i < word.length; ) {
        if (word[i] === first && i < word.length - 1 && word[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else merged.push(word[i++]);
      }
      word.splice(0, word.length, ...merged);
    }
    const ids = word.map((w) => this.encoder.get(w)!);
    this.cache.set(token, ids);
    return ids;
  }

  /** `SimpleTokenizer.encode`: ids without SOT/EOT. */
  encode(text: string): number[] {
    const clean = whitespaceClean(basicClean(text)).toLowerCase();
    const out: number[] = [];
    for (const m of clean.matchAll(PRE_SPLIT)) {
      let t = '';
      for (const b of Buffer.from(m[0], 'utf8')) t += this.byteEncoder[b];
      for (const id of this.bpe(t)) out.push(id);
    }
    return out;
  }

  /** `SimpleTokenizer.decode`: SOT/EOT come out as their names and padding zeros as "!", like the reference. */
  decode(ids: ArrayLike<number>): string {
    const bytes: number[] = [];
    for (let i = 0; i < ids.length; i++)
      for (const c of this.decoder[ids[i]] ?? '') bytes.push(this.byteDecoder.get(c) ?? 0x3f);
    return Buffer.from(bytes).toString('utf8').replaceAll('</w>', ' ');
  }

  /** `clip.tokenize`: one row of `contextLength` ids per text, SOT … EOT then zeros; row-major [T, contextLength]. */
  tokenize(texts: string | readonly string[], options: TokenizeOptions = {}): Int32Array {
    const list = typeof texts === 'string' ? [texts] : texts;
    const ctx = options.contextLength ?? CONTEXT_LENGTH;
    const out = new Int32Array(list.length * ctx);
    list.forEach((text, row) => {
      const ids = [SOT_TOKEN, ...this.encode(text), EOT_TOKEN];
      if (ids.length > ctx) {
        if (!options.truncate) throw new TextTooLongError(text, ids.length, ctx);
        ids.length = ctx;
        ids[ctx - 1] = EOT_TOKEN;
      }
      out.set(ids, row * ctx);
    });
    return out;
  }
}

let shared: ClipTokenizer | undefined;

/** The tokenizer over the shipped vocabulary, loaded once. */
export function getTokenizer(): ClipTokenizer {
  shared ??= ClipTokenizer.fromFile();
  return shared;
}

/** `clip.tokenize(texts)` with the shipped vocabulary: Int32Array [texts.length, 77]. */
export function tokenize(texts: string | readonly string[], options?: TokenizeOptions): Int32Array {
  return getTokenizer().tokenize(texts, options);
}
