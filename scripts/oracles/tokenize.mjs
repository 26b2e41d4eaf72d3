// Prints the token ids @huggingface/tokenizers gives for each text, as the expected values in
// tests/unit/tokenizer/*_test.cpp were produced:
//   node scripts/oracles/tokenize.mjs TOKENIZER_DIR TEXT [TEXT ...]
//   node scripts/oracles/tokenize.mjs TOKENIZER_DIR --json CASES.json   (a list of strings)
// TOKENIZER_DIR holds tokenizer.json and tokenizer_config.json. Ids are without special tokens
// added (add_special_tokens: false), one JSON line per text: {"text", "ids", "decoded"}.
import fs from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';

const [dir, ...rest] = process.argv.slice(2);
if (!dir || rest.length === 0) {
  console.error('usage: tokenize.mjs TOKENIZER_DIR TEXT... | --json CASES.json');
  process.exit(2);
}
const tokenizerJson = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
const configPath = path.join(dir, 'tokenizer_config.json');
const config = fs.existsSync(configPath) ? JSON.parse(fs.readFileSync(configPath, 'utf8')) : {};
const tokenizer = new Tokenizer(tokenizerJson, config);
const texts = rest[0] === '--json' ? JSON.parse(fs.readFileSync(rest[1], 'utf8')) : rest;
for (const text of texts) {
  const ids = tokenizer.encode(text, { add_special_tokens: false }).ids;
  console.log(JSON.stringify({ text, ids, decoded: tokenizer.decode(ids) }));
}
