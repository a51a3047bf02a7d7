// check.js parses Power Query M section documents (.pq files) with Microsoft's
// own parser, @microsoft/powerquery-parser, and exits non-zero on the first
// lex or parse error, printing it with its position.
//
// Usage: node check.js FILE.pq [FILE.pq ...]   ("-" reads standard input)
"use strict";

const fs = require("fs");
const PQP = require("@microsoft/powerquery-parser");

function describe(task) {
  const err = task.error;
  const parts = [];
  if (err && err.message) parts.push(err.message);
  const inner = err && err.innerError;
  if (inner) {
    if (inner.message && inner.message !== err.message) parts.push(inner.message);
    const pos = inner.graphemePosition || (inner.foundToken && inner.foundToken.token && inner.foundToken.token.positionStart);
    if (pos && pos.lineNumber !== undefined) {
      parts.push(`at line ${pos.lineNumber + 1}, column ${(pos.lineCodeUnit !== undefined ? pos.lineCodeUnit : pos.columnNumber) + 1}`);
    }
  }
  return parts.join(": ") || String(err);
}

async function checkText(name, text) {
  const settings = { ...PQP.DefaultSettings, parseBehavior: PQP.Parser.ParseBehavior.ParseSection };
  const task = await PQP.TaskUtils.tryLexParse(settings, text);
  if (PQP.TaskUtils.isOk(task)) {
    return true;
  }
  const stage = PQP.TaskUtils.isLexStage(task) ? "lex" : "parse";
  process.stderr.write(`${name}: ${stage} error: ${describe(task)}\n`);
  return false;
}

async function main(args) {
  if (args.length === 0) {
    process.stderr.write("usage: node check.js FILE.pq [FILE.pq ...]\n");
    return 2;
  }
  let ok = true;
  for (const name of args) {
    const text = name === "-" ? fs.readFileSync(0, "utf8") : fs.readFileSync(name, "utf8");
    // Power Query accepts a UTF-8 byte order mark at the start of a .pq.
    if (!(await checkText(name, text.replace(/^\uFEFF/, "")))) ok = false;
  }
  return ok ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`check.js: ${err && err.stack ? err.stack : err}\n`);
    process.exit(2);
  },
);
