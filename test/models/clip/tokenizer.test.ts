import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { parseNpy } from '../../../src/io/npy.js';
import { expandTemplates, IMAGENET_TEMPLATES } from '../../../src/models/clip/templates.js';
import {
  bytesToUnicode,
  CONTEXT_LENGTH,
  EOT_TOKEN,
  fixText,
  getTokenizer,
  htmlUnescape,
  SOT_TOKEN,
  TextTooLongError,
  tokenize,
} from '../../../src/models/clip/tokenizer.js';

const fx = new URL('../../fixtures/clip/', import.meta.url);

/** Ids of one text without SOT/EOT/padding. */
function ids(text: string): number[] {
  return getTokenizer().encode(text);
}

describe('CLIP tokenizer', () => {
  test('matches clip.tokenize on the fixture texts exactly', () => {
    const texts: string[] = JSON.parse(readFileSync(new URL('texts.json', fx), 'utf8'));
    // A copy as Uint8Array keeps the array's data at offset 0 of its own buffer.
    const ref = parseNpy(new Uint8Array(readFileSync(new URL('tokens.npy', fx))));
    assert.deepEqual(ref.shape, [texts.length, 77]);
    const got = tokenize(texts);
    assert.equal(got.length, texts.length * 77);
    for (let r = 0; r < texts.length; r++)
      assert.deepEqual(
        Array.from(got.subarray(r * 77, (r + 1) * 77)),
        Array.from((ref.data as Int32Array).subarray(r * 77, (r + 1) * 77)),
        texts[r],
      );
  });

  test('vocabulary layout: bytes, bytes+</w>, merges, specials', () => {
    const tok = getTokenizer();
    assert.equal(tok.vocabSize, 49408);
    const table = bytesToUnicode();
    assert.equal(table.length, 256);
    assert.equal(new Set(table.map(([, c]) => c)).size, 256);
    // Printable ASCII comes first in the reference's dict order, so id(c+'</w>') = 256 + (c - '!').
    assert.deepEqual(ids('a'), [256 + 0x61 - 0x21]);
    assert.deepEqual(ids('!'), [256]);
    assert.deepEqual(ids('7'), [256 + 0x37 - 0x21]);
    // Merge ids read off the merge list: 512 + line index.
    assert.deepEqual(ids('hello world'), [3306, 1002]);
    assert.deepEqual(ids('photo fish abc'), [1125, 2759, 5334]);
  });

  test('wraps with SOT/EOT and pads with zeros to 77', () => {
    const row = tokenize('a photo');
    assert.equal(row.length, CONTEXT_LENGTH);
    assert.deepEqual(Array.from(row.subarray(0, 4)), [SOT_TOKEN, 320, 1125, EOT_TOKEN]);
    assert.ok(row.subarray(4).every((v) => v === 0));
    assert.deepEqual(Array.from(tokenize('')).slice(0, 3), [SOT_TOKEN, EOT_TOKEN, 0]);
  });

  test('special-token text maps to the special ids, as the reference cache does', () => {
    assert.deepEqual(ids('<|startoftext|>a<|endoftext|>'), [SOT_TOKEN, 320, EOT_TOKEN]);
  });

  test('case, whitespace, tabs and newlines', () => {
    const base = ids('a photo of a face');
    assert.deepEqual(ids('A PHOTO Of a FaCe'), base);
    assert.deepEqual(ids('  a\tphoto\n\nof\r\na \u00a0\u3000face  '), base);
    assert.deepEqual(ids('a\u2028photo\u2029of\ra face'), base);
    // ftfy reads a C1 control as Windows-1252 before it normalizes line breaks: U+0085 becomes '…'.
    assert.deepEqual(ids('of\u0085a'), ids('of…a'));
    // ftfy deletes vertical tab (it is a control character to ftfy, not a line break).
    assert.deepEqual(ids('a photo of a\u000bface'), ids('a photo of aface'));
  });

  test('digits split one by one; punctuation runs stay together', () => {
    // "2024," → 2,0,2,4 then ","; each digit with </w>.
    const d = (c: string) => 256 + c.charCodeAt(0) - 0x21;
    assert.deepEqual(ids('2024'), ['2', '0', '2', '4'].map(d));
    assert.deepEqual(ids('3.14')[0], d('3'));
    assert.deepEqual(ids('3.14').slice(2), [d('1'), d('4')]);
    assert.equal(ids('!!!').length, 1);
    assert.deepEqual(ids('x²'), ids('x ²'), 'superscript two is \\p{N}: its own token');
  });

  test('contractions split like the reference', () => {
    assert.deepEqual(ids("don't"), [847, 713]);
    assert.deepEqual(ids("don't"), [...ids('don'), ...ids("'t")]);
    assert.deepEqual(ids("it's the dog's"), [585, 568, 518, 1929, 568]);
    assert.deepEqual(ids("they're we've i'm you'll he'd").length, 10);
  });

  test('ftfy emulation: curly quotes, NFC, ligatures, width, mojibake, control characters', () => {
    assert.deepEqual(ids('don\u2019t'), ids("don't"));
    assert.deepEqual(ids('\u201cquoted\u201d'), ids('"quoted"'));
    assert.deepEqual(ids('cafe\u0301'), ids('café'));
    assert.deepEqual(ids('café'), [15304]);
    assert.deepEqual(ids('\ufb01sh'), ids('fish'));
    assert.deepEqual(ids('ＡＢＣ'), ids('abc'));
    assert.deepEqual(ids('cafÃ©'), ids('café'));
    assert.deepEqual(ids('donâ€™t'), ids("don't"));
    assert.deepEqual(ids('a\u0000 pho\u200b\ufefftoo'.replace('\u200b', '')), ids('a photoo'));
    assert.deepEqual(ids('\u001b[31mred\u001b[0m'), ids('red'));
    assert.equal(fixText('naïve résumé'), 'naïve résumé', 'ordinary accents are left alone');
    assert.equal(fixText('Ã©t\u00e9'), 'été');
  });

  test('accents, CJK and emoji are byte-level and survive decode', () => {
    const tok = getTokenizer();
    for (const text of [
      'crème brûlée',
      '日本語のテキスト',
      'emoji 😀 face',
      'Ελληνικά κείμενο',
      'zoë 👩🏽‍🚀',
    ]) {
      const row = tok.tokenize(text);
      assert.ok(row.every((v) => v >= 0 && v < tok.vocabSize));
      const body = Array.from(row).filter((v) => v !== 0 && v !== SOT_TOKEN && v !== EOT_TOKEN);
      assert.equal(tok.decode(body).trim(), text.toLowerCase(), text);
    }
    // The emoji is one merged byte sequence in the vocabulary (see the fixture: one id between words).
    assert.equal(ids('😀').length, 1);
  });

  test('html entities: unescaped up to three times (ftfy, then html.unescape twice)', () => {
    assert.deepEqual(ids('salt &amp; pepper'), ids('salt & pepper'));
    assert.deepEqual(ids('&lt;3'), ids('<3'));
    assert.deepEqual(ids('&amp;amp;amp;lt;3'), ids('<3'));
    assert.deepEqual(ids('caf&eacute;'), ids('café'));
    assert.deepEqual(ids('caf&#233;'), ids('café'));
    assert.deepEqual(ids('caf&#xE9'), ids('café'));
  });

  test("htmlUnescape agrees with Python's html.unescape", () => {
    const cases: [string, string][] = [
      ['&amp;', '&'],
      ['&amp;amp;', '&amp;'],
      ['&copyright', '©right'],
      ['&notit;', '¬it;'],
      ['&eacute;t&eacute;', 'été'],
      ['&#169;&#xA9;&#Xa9', '©©©'],
      ['&#128;&#0;&#x110000;&#xD800;&#1;', '€\ufffd\ufffd\ufffd'],
      ['&lt;3 &gt; &quot;hi&quot; &apos;', `<3 > "hi" '`],
      ['&nosuch; & &', '&nosuch; & &'],
      ['fish &amp chips', 'fish & chips'],
      ['&AMP;&COPY &Eacute', '&© É'],
    ];
    for (const [input, want] of cases) assert.equal(htmlUnescape(input), want, input);
  });

  test('too-long text throws a typed error; truncate ends with EOT', () => {
    const fits = Array(75).fill('a').join(' ');
    assert.equal(tokenize(fits)[76], EOT_TOKEN);
    const long = `${fits} a`;
    assert.throws(
      () => tokenize(long),
      (e: unknown) => {
        assert.ok(e instanceof TextTooLongError);
        assert.equal(e.tokenCount, 78);
        assert.equal(e.contextLength, 77);
        return true;
      },
    );
    const cut = tokenize(long, { truncate: true });
    assert.equal(cut[0], SOT_TOKEN);
    assert.equal(cut[75], 320);
    assert.equal(cut[76], EOT_TOKEN);
    assert.equal(tokenize(['a', 'a b'], { contextLength: 4 }).length, 8);
  });

  test('79 ImageNet templates, each with one slot', () => {
    assert.equal(IMAGENET_TEMPLATES.length, 79);
    assert.equal(new Set(IMAGENET_TEMPLATES).size, 79);
    assert.ok(IMAGENET_TEMPLATES.every((t) => t.split('{}').length === 2));
    assert.equal(IMAGENET_TEMPLATES[0], 'a bad photo of a {}.');
    assert.equal(IMAGENET_TEMPLATES[78], 'a tattoo of the {}.');
    assert.ok(!IMAGENET_TEMPLATES.includes('a photo of many {}.'));
    const filled = expandTemplates('$& face');
    assert.equal(filled[34], 'a $& face in a video game.');
    assert.equal(tokenize(filled).length, 79 * 77);
  });

  test('`styleclip tokenize` subcommand: ids, --json, clear error without a stack trace', () => {
    const script =
      "import { tokenizeCommand } from './src/cli/tokenize.ts';" +
      "await tokenizeCommand().parseAsync(process.argv.slice(1), { from: 'user' });";
    const run = (...args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, '--', ...args], {
        encoding: 'utf8',
      });
    const plain = run('a photo', 'hello world');
    assert.equal(plain.status, 0, plain.stderr);
    assert.equal(plain.stdout, '49406 320 1125 49407\n49406 3306 1002 49407\n');
    const json = run('--json', 'a photo');
    assert.deepEqual(JSON.parse(json.stdout), Array.from(tokenize('a photo')));
    const long = run(Array(80).fill('a').join(' '));
    assert.notEqual(long.status, 0);
    assert.match(long.stderr, /too long/);
    assert.doesNotMatch(long.stderr, /\bat \S+:\d+/);
    const cut = run('--truncate', Array(80).fill('a').join(' '));
    assert.equal(cut.stdout.trim().split(' ').length, 77);
  });
});
