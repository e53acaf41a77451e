# awk -v max=N [-v skip=...] -f scripts/long_functions.awk FILES
# Prints each C function whose body is longer than max lines, one a line
# ("file:line: name is N lines long (at most max)"). A definition starts at
# column 0 with a name and "(", its body at the first line that ends in "{",
# and it ends at the first "}" in column 0 (the layout of every C file here).
# Skip: names ("file:function", space-separated) that may be longer for now.
BEGIN { n = split(skip, s, " "); for (i = 1; i <= n; i++) allowed[s[i]] = 1 }
FNR == 1 { state = 0 }
/^[A-Za-z_][^;=]*\(/ && !/;[ \t]*$/ && state < 2 {
  name = $0; gsub(/__attribute__\(\([^)]*\)\)/, "", name)
  sub(/\(.*/, "", name); sub(/.*[ *]/, "", name); line = FNR; state = 1
}
state == 1 && /(;|\})[ \t]*$/ { state = 0; next }  # a prototype or a one-line function
state == 1 && /\{[ \t]*$/ { start = FNR; state = 2; next }
state == 2 && /^\}/ {
  len = FNR - start - 1
  if (len > max && !((FILENAME ":" name) in allowed)) {
    printf "%s:%d: %s is %d lines long (at most %d)\n", FILENAME, line, name, len, max
    found = 1
  }
  state = 0
}
END { exit found }
