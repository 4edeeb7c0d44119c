// Makes the reference vectors that hf_tokenizer_test checks Lethe's
// tokenizer.json reader against. Not part of the build; run by hand after
// installing the reference tokenizers in a scratch folder outside the repo:
//
//   mkdir -p /tmp/tokref && cd /tmp/tokref && npm init -y &&
//     npm install tokenizers@0.23.2 @huggingface/tokenizers@0.2.0 \
//                 llama3-tokenizer-js@1.2.0
//   TOKREF=/tmp/tokref LETHE_SHARED_DIR=/work/shared \
//     node libs/tokenizer/testdata/make_hf_vectors.cjs libs/tokenizer/testdata
//
// The ids come from `tokenizers` (npm; Hugging Face's Rust library, the one
// transformers uses). For Llama 3 they are cross-checked against
// @huggingface/tokenizers (a separate JavaScript implementation) and
// llama3-tokenizer-js (Meta's ranks, its own BPE); the script stops on any
// disagreement. It writes:
//   llama3_hard_strings.jsonl  {text, ids, plain, decoded} per hard string
//   llama3_tofu_ids.txt        one line per TOFU full.json question/answer:
//                              "<line> <q|a> <count> <fnv1a64 of the ids>"
//   sp_style_tokenizer.json    a small SentencePiece-style BPE (byte fallback,
//                              Prepend+Replace normaliser, Llama-2 decoders)
//   metaspace_tokenizer.json   the same vocabulary with a Metaspace
//                              pre-tokenizer and decoder (older HF files)
//   sp_unk_tokenizer.json      sp_style without byte fallback (fused
//                              <unk>), with Split and Digits pre-tokenizers
//   qwen_style_tokenizer.json  a small byte-level BPE with Qwen2's split
//                              pattern, NFC, and ChatML added tokens
//   gpt2_style_tokenizer.json  its vocabulary with GPT-2's ByteLevel
//                              pre-tokenizer (prefix space, own regex),
//                              Strip, and lstrip/single_word added tokens
//   <name>_vectors.jsonl       {text, ids, plain, decoded} for each of those
// where ids = encode(text) with special tokens, plain = without, decoded =
// decode(ids, skip_special_tokens=true).
'use strict';
const fs = require('fs');
const path = require('path');
const {createRequire} = require('module');

const refRequire = createRequire(path.join(process.env.TOKREF || '.', 'x.js'));
const {Tokenizer: RustTokenizer} = refRequire('tokenizers');

const shared = process.env.LETHE_SHARED_DIR || '../shared';
const outDir = process.argv[2];
if (!outDir) throw new Error('usage: make_hf_vectors.cjs OUTPUT_DIR');

// Strings that stress pre-tokenisation, merges, bytes and added tokens.
const HARD_STRINGS = [
  '', ' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', ' \n ', '\t\t\n',
  'Hello world!', 'hello', 'HELLO', 'Hello  world', 'Hello   world  ',
  ' leading space', 'trailing space ', '  two leading', 'a\tb\tc',
  'line one\nline two\n\nline four', 'windows\r\nline\r\nends',
  'mixed \t\n whitespace \n\t end', '\n\n\nThree newlines first',
  "don't", "DON'T", "I'LL", "You're", "WE'VE", "she'd", "I'm", "It's",
  "it'S", "They'RE", "'s", "'", "''", "rock 'n' roll", "o'clock",
  '1', '12', '123', '1234', '1234567', '12345678901234567890',
  '3.14159', '1,000,000', '-42', '+7 (555) 010-9999', '2024-01-31T12:00:00Z',
  'v1.2.3', '0x1F', '1st 2nd 3rd 4th', '٣٤٥ Arabic-Indic digits',
  'café', 'naïve résumé', 'Zoë wrote 42 books in Kyōto!', 'Ångström',
  'São Paulo', 'Dvořák', 'Łódź', 'İstanbul', 'straße', 'ﬁnancial',
  'e\u0301 (combining acute)', 'A\u030A vs \u00C5', '\u212B angstrom sign',
  'Vie\u0302\u0323t reordered marks', '\u1100\u1161\u11A8 conjoining jamo',
  'next\u0085line (NEL)', 'a\u0085\u0085b', 'x \u0085 y', '\u0085\u0085\u0085',
  '.\u0085\u0085.', ' \u0085Hi', 'a  \u0085b', 'a\u180E\u180Eb', ' \u180EHi',
  'a  \u180Eb', '\u180E', 'x \u180E y', 'x\u00A0\u00A0y', 'a \u3000 b', '\uFEFFbyte order mark', 'x\u2028y\u2029z',
  '中文', '日本語のテキスト', '한국어 문장입니다', '我爱北京天安门。',
  'Привет, мир!', 'Γειά σου Κόσμε', 'שלום עולם', 'مرحبا بالعالم',
  'नमस्ते दुनिया', 'ภาษาไทย', 'Tiếng Việt có dấu',
  '🎉', '🎉🎉🎉', '👍🏽', '👨‍👩‍👧‍👦 family', '🇫🇷 flag', 'I ❤️ NY',
  'emoji🎉inside', '😀 smile 😃',
  '<|eot_id|>', 'User text with <|eot_id|> inside',
  '<|begin_of_text|>Hello', '<|start_header_id|>user<|end_header_id|>\n\nHi',
  '<|eot_id|><|eot_id|>', ' <|eot_id|> ', '<|reserved_special_token_5|>',
  '<|not_a_token|>', '<|eot_id', '<|im_start|>user\nHi<|im_end|>',
  '<s>', '</s>', '<unk>', '<tool_call>x</tool_call>',
  '<|endoftext|>', 'a<|endoftext|>b',
  'https://example.com/path?q=1&r=two#frag', 'user@example.org',
  'C:\\Program Files\\Lethe', '/usr/local/bin/lethe --help',
  'int main() { return 0; }', 'if (a && b || !c) x += 1;',
  '    indented code', '\tdef f(x):\n\t\treturn x**2',
  '{"key": "value", "n": [1, 2, 3]}', '<html><body>Hi</body></html>',
  '...', '!!!', '???', '?!', '---', '***bold***', '__init__', '#hashtag',
  '$100.00', '€50', '£3', '¥1000', '50%', '½ cup', '°C', '™', '©2024',
  '\u00A0non-breaking\u00A0space', 'zero\u200Bwidth', 'soft\u00ADhyphen',
  '\u3000ideographic space', 'tab\u000Bvertical', 'form\u000Cfeed',
  'Question: Who wrote it?\nAnswer: Someone.',
  '[INST] What genre? [/INST] Mystery.',
  'supercalifragilisticexpialidocious',
  'Pneumonoultramicroscopicsilicovolcanoconiosis',
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  'ababababababababababababababab',
  // Runs of one repeated pair: BPE must merge them leftmost first.
  'zzzzzzzzz', 'hmmmmmmmmm', 'ahahahahahaha', 'Wheeeeeeee', 'Noooooooooo',
  'eeeeeee', 'ooooooo', 'lllllll', 'sssssss', 'ttttttt', 'Helllllllo',
  'Booooooook', 'seeeeeeeen', '!!!!!!!!!!!!!!', '==========', '############',
  '—————', '1111111111', '0000000', '__________', '..........',
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  '▁ the space symbol', 'Ġ byte-level space', 'Ċ',
  'The quick brown fox jumps over the lazy dog.',
  'THE QUICK BROWN FOX', 'mIxEd CaSe WoRdS',
  'Jaime Vasquez was born on the 25th of February in the year 1958.',
];

// Probe strings for the small synthetic tokenizers: the hard strings and
// some TOFU text (stored with the vectors, so the test needs no shared data).
function probeStrings(tofu) {
  return HARD_STRINGS.concat(tofu.slice(0, 60));
}

function readTofu() {
  const file = path.join(shared, 'data/tofu/full.json');
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l);
  return lines.map((line) => JSON.parse(line));
}

// FNV-1a 64 over the ids as little-endian uint32.
function fnv1a64(ids) {
  let hash = 0xcbf29ce484222325n;
  const prime = 0x100000001b3n;
  for (const id of ids) {
    for (let k = 0; k < 4; ++k) {
      hash ^= BigInt((id >>> (8 * k)) & 0xff);
      hash = (hash * prime) & 0xffffffffffffffffn;
    }
  }
  return hash.toString(16).padStart(16, '0');
}

async function vectors(tokenizer, strings) {
  const rows = [];
  for (const text of strings) {
    const ids = (await tokenizer.encode(text, null, {addSpecialTokens: true}))
        .getIds();
    const plain = (await tokenizer.encode(text, null,
                                          {addSpecialTokens: false}))
        .getIds();
    const decoded = await tokenizer.decode(ids, true);
    rows.push({text, ids, plain, decoded});
  }
  return rows;
}

function writeJsonl(name, rows) {
  fs.writeFileSync(path.join(outDir, name),
                   rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
}

// --- Llama 3 ---------------------------------------------------------------

async function llama3(tofu) {
  const dir = path.join(shared, 'data/tokenizers/llama3');
  const jsonText = fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8');
  const rust = RustTokenizer.fromString(jsonText);
  const rows = await vectors(rust, HARD_STRINGS);

  // Independent implementations must agree with the Rust library.
  const {Tokenizer: JsTokenizer} = refRequire('@huggingface/tokenizers');
  const js = new JsTokenizer(
      JSON.parse(jsonText),
      JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'))));
  const llama3js = (await import(refRequire.resolve('llama3-tokenizer-js')))
                       .default;
  let checked = 0;
  const mismatches = [];
  const check = (text, plain) => {
    const a = js.encode(text, {add_special_tokens: false}).ids;
    const b = llama3js.encode(text, {bos: false, eos: false});
    for (const [name, other] of [['@huggingface/tokenizers', a],
                                 ['llama3-tokenizer-js', b]]) {
      if (JSON.stringify(other) !== JSON.stringify(plain)) {
        mismatches.push(`${name}: ${JSON.stringify(text).replace(/\u0085/g, '\\u0085')}`);
      }
    }
    ++checked;
  };
  for (const row of rows) check(row.text, row.plain);
  writeJsonl('llama3_hard_strings.jsonl', rows);

  const lines = [];
  for (let i = 0; i < tofu.length; ++i) {
    for (const [field, text] of [['q', tofu[i].question],
                                 ['a', tofu[i].answer]]) {
      const plain = (await rust.encode(text, null, {addSpecialTokens: false}))
          .getIds();
      check(text, plain);
      lines.push(`${i} ${field} ${plain.length} ${fnv1a64(plain)}`);
    }
  }
  fs.writeFileSync(path.join(outDir, 'llama3_tofu_ids.txt'),
                   lines.join('\n') + '\n');
  // llama3-tokenizer-js splits with JavaScript's \s, which lacks U+0085
  // (Oniguruma's, which the Rust library uses, has it).
  const real = mismatches.filter(
      (m) => !(m.startsWith('llama3-tokenizer-js') && m.includes('\\u0085')));
  console.log(`llama3: ${checked} strings cross-checked, ` +
              `${mismatches.length - real.length} expected differences ` +
              `(U+0085 in llama3-tokenizer-js), ${real.length} mismatches`);
  for (const m of mismatches) console.log('  ' + m);
  if (real.length) throw new Error(real.slice(0, 10).join('\n'));
}

// --- Small synthetic tokenizers ----------------------------------------------

// Plain BPE training over words given as arrays of symbols: repeatedly merge
// the most frequent adjacent pair (ties: lexicographically smallest).
function trainMerges(words, count) {
  const merges = [];
  let seqs = words.map((w) => w.slice());
  for (let m = 0; m < count; ++m) {
    const counts = new Map();
    for (const s of seqs) {
      for (let i = 0; i + 1 < s.length; ++i) {
        const key = s[i] + '\u0000' + s[i + 1];
        counts.set(key, (counts.get(key) || 0) + 1);
      }
    }
    let best = null;
    let bestCount = 1;
    for (const [key, c] of counts) {
      if (c > bestCount || (c === bestCount && best !== null && key < best)) {
        best = key;
        bestCount = c;
      }
    }
    if (best === null) break;
    const [a, b] = best.split('\u0000');
    merges.push([a, b]);
    seqs = seqs.map((s) => {
      const out = [];
      for (let i = 0; i < s.length; ++i) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out.push(a + b);
          ++i;
        } else {
          out.push(s[i]);
        }
      }
      return out;
    });
  }
  return merges;
}

function corpus(tofu) {
  const text = [];
  for (const r of tofu.slice(0, 400)) text.push(r.question, r.answer);
  return text;
}

function addedToken(id, content, special, extra = {}) {
  return Object.assign({id, content, single_word: false, lstrip: false,
                        rstrip: false, normalized: !special, special},
                       extra);
}

function spVocab(tofu) {
  const S = '\u2581';
  const words = [];
  for (const line of corpus(tofu)) {
    for (const w of line.split(' ')) {
      if (w) words.push(Array.from(S + w));
    }
  }
  const vocab = {'<unk>': 0, '<s>': 1, '</s>': 2};
  for (let b = 0; b < 256; ++b) {
    vocab['<0x' + b.toString(16).toUpperCase().padStart(2, '0') + '>'] =
        3 + b;
  }
  // Characters of the corpus, but not all: the rare ones fall back to bytes.
  const chars = new Map();
  for (const w of words) for (const c of w) chars.set(c, (chars.get(c) || 0) + 1);
  const kept = [...chars.entries()].filter(([, n]) => n >= 20)
                   .map(([c]) => c).sort();
  for (const c of kept) vocab[c] = Object.keys(vocab).length;
  const keptSet = new Set(kept);
  const merges = trainMerges(
      words.filter((w) => w.every((c) => keptSet.has(c))), 250);
  for (const [a, b] of merges) {
    if (!(a + b in vocab)) vocab[a + b] = Object.keys(vocab).length;
  }
  return {vocab, merges};
}

function spStyle(vocab, merges, metaspace) {
  const n = Object.keys(vocab).length;
  const S = '\u2581';
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      addedToken(0, '<unk>', true, {normalized: false}),
      addedToken(1, '<s>', true, {normalized: false}),
      addedToken(2, '</s>', true, {normalized: false}),
      // A user-defined token in the style of chat markers, stripping the
      // spaces around it.
      addedToken(n, '[INST]', false,
                 {lstrip: true, rstrip: true, normalized: false}),
      addedToken(n + 1, 'Okafor', false, {normalized: true}),
    ],
    normalizer: metaspace ? null : {
      type: 'Sequence',
      normalizers: [
        {type: 'Prepend', prepend: S},
        {type: 'Replace', pattern: {String: ' '}, content: S},
      ],
    },
    pre_tokenizer: metaspace ?
        {type: 'Metaspace', replacement: S, prepend_scheme: 'first',
         split: false} :
        null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{SpecialToken: {id: '<s>', type_id: 0}},
               {Sequence: {id: 'A', type_id: 0}}],
      pair: [{SpecialToken: {id: '<s>', type_id: 0}},
             {Sequence: {id: 'A', type_id: 0}},
             {SpecialToken: {id: '<s>', type_id: 1}},
             {Sequence: {id: 'B', type_id: 1}}],
      special_tokens: {'<s>': {id: '<s>', ids: [1], tokens: ['<s>']}},
    },
    decoder: metaspace ?
        {type: 'Metaspace', replacement: S, prepend_scheme: 'first',
         split: false} :
        {
          type: 'Sequence',
          decoders: [
            {type: 'Replace', pattern: {String: S}, content: ' '},
            {type: 'ByteFallback'},
            {type: 'Fuse'},
            {type: 'Strip', content: ' ', start: 1, stop: 0},
          ],
        },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      // Older files spell merges as "a b" strings: use that form here.
      merges: merges.map(([a, b]) => a + ' ' + b),
    },
  };
}

// GPT-2's byte -> character table.
function byteLevelTable() {
  const bytes = [];
  for (let b = 33; b <= 126; ++b) bytes.push(b);
  for (let b = 161; b <= 172; ++b) bytes.push(b);
  for (let b = 174; b <= 255; ++b) bytes.push(b);
  const chars = bytes.slice();
  let n = 0;
  for (let b = 0; b < 256; ++b) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + n++);
    }
  }
  const table = new Array(256);
  bytes.forEach((b, i) => { table[b] = String.fromCodePoint(chars[i]); });
  return table;
}

const QWEN_PATTERN =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|" +
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function qwenStyle(tofu) {
  const table = byteLevelTable();
  const encoder = new TextEncoder();
  const re = /(?:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;
  const words = [];
  for (const line of corpus(tofu)) {
    for (const m of line.normalize('NFC').matchAll(re)) {
      words.push(Array.from(encoder.encode(m[0])).map((b) => table[b]));
    }
  }
  const vocab = {};
  for (let b = 0; b < 256; ++b) vocab[table[b]] = b;
  const merges = trainMerges(words, 300);
  for (const [a, b] of merges) {
    if (!(a + b in vocab)) vocab[a + b] = Object.keys(vocab).length;
  }
  const n = Object.keys(vocab).length;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      addedToken(n, '<|endoftext|>', true, {normalized: false}),
      addedToken(n + 1, '<|im_start|>', true, {normalized: false}),
      addedToken(n + 2, '<|im_end|>', true, {normalized: false}),
      addedToken(n + 3, '<tool_call>', false, {normalized: false}),
      addedToken(n + 4, '</tool_call>', false, {normalized: false}),
    ],
    normalizer: {type: 'NFC'},
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {type: 'Split', pattern: {Regex: QWEN_PATTERN}, behavior: 'Isolated',
         invert: false},
        {type: 'ByteLevel', add_prefix_space: false, trim_offsets: false,
         use_regex: false},
      ],
    },
    post_processor: {type: 'ByteLevel', add_prefix_space: false,
                     trim_offsets: false, use_regex: false},
    decoder: {type: 'ByteLevel', add_prefix_space: false, trim_offsets: false,
              use_regex: false},
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,  // Newer files spell merges as [a, b] pairs.
    },
  };
}

// GPT-2/RoBERTa-style: ByteLevel pre-tokenizer with its own regex and a
// prefix space, a Strip normaliser, a Split that removes some punctuation,
// and added tokens with lstrip and single_word.
function gpt2Style(qwen) {
  const json = JSON.parse(JSON.stringify(qwen));
  const n = Object.keys(json.model.vocab).length;
  json.added_tokens = [
    addedToken(n, '<|endoftext|>', true, {normalized: false}),
    addedToken(n + 1, '<mask>', true, {lstrip: true, normalized: false}),
    addedToken(n + 2, 'Okafor', false, {single_word: true, normalized: false}),
  ];
  json.normalizer = {type: 'Strip', strip_left: true, strip_right: true};
  json.pre_tokenizer = {
    type: 'Sequence',
    pretokenizers: [
      {type: 'Split', pattern: {Regex: '[;|]'}, behavior: 'Removed',
       invert: false},
      {type: 'ByteLevel', add_prefix_space: true, trim_offsets: true,
       use_regex: true},
    ],
  };
  json.post_processor = {type: 'ByteLevel', add_prefix_space: true,
                         trim_offsets: true, use_regex: true};
  return json;
}

// SentencePiece-style without byte fallback (unknowns fuse into one <unk>),
// with Split and Digits pre-tokenizers.
function spUnk(spJson) {
  const json = JSON.parse(JSON.stringify(spJson));
  json.model.byte_fallback = false;
  json.model.fuse_unk = true;
  json.pre_tokenizer = {
    type: 'Sequence',
    pretokenizers: [
      {type: 'Split', pattern: {String: 'e'}, behavior: 'MergedWithPrevious',
       invert: false},
      {type: 'Digits', individual_digits: false},
      {type: 'Split', pattern: {Regex: '[aeiou]+'}, behavior: 'MergedWithNext',
       invert: true},
    ],
  };
  return json;
}

async function synthetic(name, json, strings) {
  const text = JSON.stringify(json);
  fs.writeFileSync(path.join(outDir, `${name}_tokenizer.json`), text + '\n');
  const rows = await vectors(RustTokenizer.fromString(text), strings);
  writeJsonl(`${name}_vectors.jsonl`, rows);
  console.log(`${name}: ${rows.length} vectors`);
}

(async () => {
  const tofu = readTofu();
  await llama3(tofu);
  const strings = probeStrings(
      tofu.flatMap((r) => [r.question, r.answer]).slice(1000));
  strings.push('[INST]  Who is Okafor?  [INST]x', 'a [INST] b',
               'Okafor Okafor', 'Mira Okafor writes.');
  const {vocab, merges} = spVocab(tofu);
  strings.push('a<mask>', 'a <mask> b', 'a   <mask>', '<mask>',
               'xOkafor Okafor Okafor_ (Okafor)', ' Okafor;x|y;z ',
               'Zoë Okafor 12345 中文 🎉🎉 ok');
  const sp = spStyle(vocab, merges, false);
  await synthetic('sp_style', sp, strings);
  await synthetic('metaspace', spStyle(vocab, merges, true), strings);
  await synthetic('sp_unk', spUnk(sp), strings);
  const qwen = qwenStyle(tofu);
  await synthetic('qwen_style', qwen, strings);
  await synthetic('gpt2_style', gpt2Style(qwen), strings);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
