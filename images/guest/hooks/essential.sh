#!/bin/sh
# mmdebstrap --essential-hook: runs on the host after Debian's essential packages are installed and
# before the recipe's packages are, so that files/ (configuration that packages read when they are
# installed, such as the initramfs settings the kernel's postinst uses) is in place first.
# Arguments: ROOT (the image's root directory) RECIPE_DIR (images/guest) WHEELS (the wheelhouse).
set -eu
root="$1"
recipe="$2"

# Owned by root and 0644 or 0755 (as the executable bit in the repository says), whoever checked
# out the repository and whatever their umask; directories on the way are made 0755.
cd "$recipe/files"
find . -type f | while IFS= read -r path; do
    mode=0644
    [ -x "$path" ] && mode=0755
    install -D -o root -g root -m "$mode" "$path" "$root/${path#./}"
done
