#!/usr/bin/env bash
# Sourced by the bench/compare-*.sh scripts: replaces (or appends) one marked section of a
# Markdown file, so that each script owns its section and numbers are never hand-edited.
#   keel_write_doc_section FILE NAME CONTENT
# writes CONTENT between `<!-- NAME:begin ... -->` and `<!-- NAME:end -->` lines.
keel_write_doc_section() {
  local file=$1 name=$2 content=$3
  [ -f "$file" ] || printf '# keel benchmarks\n' > "$file"
  python3 - "$file" "$name" "$content" <<'PY'
import re, sys
path, name, content = sys.argv[1:4]
section = '<!-- %s:begin (written by its script with --write-docs) -->\n%s\n<!-- %s:end -->' % (name, content, name)
text = open(path).read()
pat = re.compile(r'<!-- %s:begin.*?<!-- %s:end -->' % (re.escape(name), re.escape(name)), re.S)
text = pat.sub(lambda m: section, text) if pat.search(text) else text.rstrip('\n') + '\n\n' + section + '\n'
open(path, 'w').write(text)
PY
}
