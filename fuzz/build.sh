#!/bin/sh
# Build the libFuzzer harnesses fuzz/fuzz_*.c with clang, AddressSanitizer
# and UndefinedBehaviorSanitizer:
#   sh fuzz/build.sh [OUTDIR]      (from the project root; default build-fuzz)
# Then run one, e.g.:
#   LSAN_OPTIONS=suppressions=fuzz/lsan.supp build-fuzz/fuzz_pages -runs=1000000 \
#     -artifact_prefix=build-fuzz/ build-fuzz/corpus/fuzz_pages fuzz/corpus/fuzz_pages
# (the first corpus folder receives what the fuzzer finds; fuzz/corpus/ holds the seeds).
set -eu
out=${1:-build-fuzz}
cc=${CC:-clang}
mkdir -p "$out"
flags="-g -O1 -std=gnu99 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -fno-omit-frame-pointer -Icsrc $(pkg-config --cflags libtracefs libtraceevent libtracecmd zlib libzstd)"
libs=$(pkg-config --libs libtracefs libtraceevent libtracecmd zlib libzstd)
# the portable sources: the flag table, errors, and the .etl reader and the
# file-format dispatch when this checkout has them
common="csrc/common.c csrc/flags.c $(ls csrc/etl/*.c csrc/reader.c 2>/dev/null | tr '\n' ' ')"
ftrace=$(ls csrc/ftrace/*.c)
no_session=$(ls csrc/ftrace/*.c | grep -v '/session\.c$')
no_reader=$(ls csrc/ftrace/*.c | grep -v '/reader\.c$')
state_dir=/dev/shm/klfuzz_state.$(id -u)
for src in fuzz/fuzz_*.c; do
  name=$(basename "$src" .c)
  case $name in
    fuzz_state) srcs="$src $common $no_session"
                extra="-DKL_STATE_DIR=\"$state_dir\"" ;;
    fuzz_header) srcs="$src $common $no_reader"; extra="" ;;  # includes reader.c
    fuzz_options) srcs="$src $common $ftrace $(ls csrc/lua/*.c | tr '\n' ' ')"
                extra="$(pkg-config --cflags --libs lua5.4)" ;;
    *)          srcs="$src $common $ftrace"; extra="" ;;
  esac
  echo "building $out/$name"
  # shellcheck disable=SC2086
  $cc $flags $extra -o "$out/$name" $srcs $libs
  mkdir -p "$out/corpus/$name"
done
