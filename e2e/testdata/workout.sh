# POSIX workout for a virtio-fs share. The e2e tests run it in the guest with
# the share's root as working directory (busybox sh, no -e).
#
# Every failed check prints "FAIL: what"; the script exits 1 if any failed.
# "CHECK key args..." lines are verified by the host after the guest exits.
# Needs /bin/uvfs-helper (cmd/uvfs-helper) for rename(2), xattrs
# and O_TMPFILE. WORKOUT_XATTR=1 makes xattr support mandatory.

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# eq WHAT GOT WANT
eq() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; }
# must WHAT CMD...: the command must succeed.
must() { what=$1; shift; "$@" || fail "$what (exit $?)"; }
# mustfail WHAT ERRNO CMD...: the command must fail, its message containing
# ERRNO (the helper prints errno names like ENOTEMPTY).
mustfail() {
	what=$1 errno=$2; shift 2
	if out=$("$@" 2>&1); then
		fail "$what: succeeded, want $errno"
	else
		case $out in *"$errno"*) ;; *) fail "$what: $out, want $errno" ;; esac
	fi
}
section() { echo "== $*"; }
helper=/bin/uvfs-helper
[ -x $helper ] || fail "guest helper $helper missing: build the initramfs with Helper set"

rm -rf work
mkdir work && cd work || { echo "FAIL: cannot create and enter work/"; exit 1; }

section "create, append, truncate"
printf 'hello\n' > hello.txt
printf 'world\n' >> hello.txt
eq "append" "$(cat hello.txt)" "hello
world"
printf 'abcdefghij' > trunc.txt
must "truncate shrink" truncate -s 4 trunc.txt
eq "truncate shrink" "$(cat trunc.txt)" "abcd"
must "truncate grow" truncate -s 10 trunc.txt
eq "truncate grow size" "$(stat -c %s trunc.txt)" 10
eq "truncate grow zero fill" "$(od -An -tx1 trunc.txt | tr -d ' \n')" "61626364000000000000"
printf 'x' > otrunc.txt
: > otrunc.txt
eq "O_TRUNC" "$(stat -c %s otrunc.txt)" 0
printf '0123456789' > overwrite.txt
printf 'AB' | dd of=overwrite.txt bs=1 seek=3 conv=notrunc 2>/dev/null
eq "write in the middle" "$(cat overwrite.txt)" "012AB56789"

section "execute, reopen"
printf '#!/bin/sh\necho ran-from-share\n' > script.sh
must "chmod +x" chmod 755 script.sh
eq "run a script written here" "$(./script.sh)" ran-from-share
printf '#!/bin/sh\necho rewritten\n' > script.sh
eq "run it after rewriting" "$(./script.sh)" rewritten
exec 5<> rw.txt
printf 'abc' >&5
exec 5>&-
exec 6< rw.txt
printf 'X' >> rw.txt
eq "append while another fd reads" "$(cat <&6)" abcX
exec 6<&-

section "rename"
printf one > r1
printf two > r2
must "rename over file" mv -f r1 r2
eq "rename over file" "$(cat r2)" one
[ ! -e r1 ] || fail "rename over file left the source"
mkdir d1 d2 && : > d1/inside
must "rename dir over empty dir" $helper rename d1 d2
[ -f d2/inside ] && [ ! -e d1 ] || fail "rename dir over empty dir: contents not moved"
mkdir d3 && : > d3/keep
mustfail "rename dir over non-empty dir" ENOTEMPTY $helper rename d2 d3
mustfail "rename file over dir" EISDIR $helper rename r2 d3
mustfail "rename dir over file" ENOTDIR $helper rename d2 r2
mkdir -p sub/deeper
must "rename across directories" mv r2 sub/deeper/moved
eq "rename across directories" "$(cat sub/deeper/moved)" one

section "link, symlink"
must "hard link" ln hello.txt hard.txt
eq "link count" "$(stat -c %h hello.txt)" 2
eq "link shares inode" "$(stat -c %i hard.txt)" "$(stat -c %i hello.txt)"
must "symlink" ln -s hello.txt sym
[ -L sym ] || fail "symlink is not a link"
eq "readlink" "$(readlink sym)" hello.txt
eq "read through symlink" "$(cat sym)" "$(cat hello.txt)"
ln -s nowhere dangling
[ -L dangling ] && [ ! -e dangling ] || fail "dangling symlink"
mkdir -p linkdir && ln -s ../hello.txt linkdir/up
eq "relative symlink" "$(cat linkdir/up)" "$(cat hello.txt)"

section "chmod, utimes"
: > modes
must "chmod 640" chmod 640 modes
eq "chmod 640" "$(stat -c %a modes)" 640
chmod 0 modes
eq "chmod 0" "$(stat -c %a modes)" 0
chmod 640 modes
mkdir modedir && chmod 750 modedir
eq "chmod dir" "$(stat -c %a modedir)" 750
: > dated
must "touch -d" touch -d '2001-02-03 04:05:06' dated
eq "mtime" "$(stat -c %Y dated)" 981173106

section "mkfifo"
must "mkfifo" mkfifo fifo
[ -p fifo ] || fail "fifo is not a named pipe"
(echo through-fifo > fifo) &
eq "read from fifo" "$(timeout 20 cat fifo)" through-fifo
wait

section "unlink of an open file"
printf 'still here\n' > open.txt
exec 3< open.txt
rm open.txt
[ ! -e open.txt ] || fail "unlinked file still visible"
eq "read unlinked file through fd" "$(cat <&3)" "still here"
exec 3<&-
exec 4> gone-while-writing.txt
rm gone-while-writing.txt
echo data >&4 || fail "write to unlinked file"
exec 4>&-

section "sparse files"
must "sparse dd" dd if=/dev/zero of=sparse bs=1M seek=16 count=1 2>/dev/null
eq "sparse size" "$(stat -c %s sparse)" 17825792
used=$(du -k sparse | cut -f1)
[ "$used" -lt 8192 ] || fail "sparse file uses $used KiB, want about 1024"
must "sparse truncate" truncate -s 1G hole
used=$(du -k hole | cut -f1)
[ "$used" -lt 64 ] || fail "1 GiB hole uses $used KiB"
eq "hole reads zero" "$(dd if=hole bs=1 skip=500000000 count=4 2>/dev/null | od -An -tx1 | tr -d ' \n')" 00000000

section "8 MB random data"
must "write random" dd if=/dev/urandom of=random.bin bs=1M count=8 2>/dev/null
sum=$(md5sum random.bin | cut -d' ' -f1)
echo "CHECK md5 random.bin $sum"
eq "random size" "$(stat -c %s random.bin)" 8388608
must "copy random" cp random.bin random.copy
echo 3 > /proc/sys/vm/drop_caches
eq "md5 after drop_caches" "$(md5sum random.bin | cut -d' ' -f1)" "$sum"
eq "md5 of copy" "$(md5sum random.copy | cut -d' ' -f1)" "$sum"

section "readdir"
mkdir many
i=0
while [ $i -lt 500 ]; do : > many/file$i; i=$((i + 1)); done
eq "readdir count" "$(ls many | wc -l)" 500
eq "readdir -la count" "$(ls -la many | grep -c ' file')" 500
eq "find count" "$(find many -type f | wc -l)" 500
rm many/file1*
eq "count after removing file1*" "$(ls many | wc -l)" 389

section "long names"
n255=$(head -c 255 /dev/zero | tr '\0' n)
must "255-byte name" touch "$n255"
[ -f "$n255" ] || fail "255-byte name not found"
if touch "${n255}x" 2>/dev/null; then fail "256-byte name was accepted"; fi
echo "CHECK longname 255"

section "statfs"
set -- $(stat -f -c '%b %S %a' .)
[ "${1:-0}" -gt 0 ] || fail "statfs blocks: ${1:-none}"
[ "${2:-0}" -gt 0 ] || fail "statfs block size: ${2:-none}"
df -k . > /dev/null || fail "df"

section "xattrs"
: > xattr.txt
if out=$($helper setxattr xattr.txt user.uvfs hello 2>&1); then
	eq "getxattr" "$($helper getxattr xattr.txt user.uvfs)" hello
	$helper setxattr xattr.txt user.gone bye
	must "removexattr" $helper removexattr xattr.txt user.gone
	eq "listxattr" "$($helper listxattr xattr.txt | grep '^user\.')" user.uvfs
	mustfail "getxattr of a missing name" ENODATA $helper getxattr xattr.txt user.gone
	echo "CHECK xattr xattr.txt user.uvfs hello"
elif [ "$WORKOUT_XATTR" = 1 ]; then
	fail "setxattr: $out"
else
	echo "NOTE: xattrs not supported here ($out); WORKOUT_XATTR=1 makes this a failure"
fi

section "O_TMPFILE"
$helper tmpfile . tmplinked
case $? in
0) eq "O_TMPFILE linked" "$(cat tmplinked)" "written through O_TMPFILE" ;;
3) echo "NOTE: O_TMPFILE not supported by this daemon" ;;
*) fail "O_TMPFILE" ;;
esac

section "birth time (statx)"
# A guest of Linux 6.11 or newer asks for it with FUSE_STATX; 6.1 has no way to.
if out=$($helper btime hello.txt 2>&1); then
	echo "CHECK btime hello.txt $out"
elif [ "$WORKOUT_BTIME" = 1 ]; then
	fail "statx birth time: $out"
else
	echo "NOTE: no birth time here ($out); WORKOUT_BTIME=1 makes this a failure"
fi

section "concurrent writers"
for w in 1 2 3 4; do
	(
		i=0
		while [ $i -lt 200 ]; do
			echo "writer$w line$i" >> shared.log
			echo "line$i" >> w$w.txt
			i=$((i + 1))
		done
		dd if=/dev/urandom of=big$w bs=64k count=32 2>/dev/null
	) &
done
wait
eq "shared log lines" "$(wc -l < shared.log)" 800
for w in 1 2 3 4; do
	eq "writer $w lines in shared log" "$(grep -c "^writer$w line" shared.log)" 200
	eq "writer $w own file" "$(wc -l < w$w.txt)" 200
	eq "writer $w big file size" "$(stat -c %s big$w)" 2097152
	echo "CHECK md5 big$w $(md5sum big$w | cut -d' ' -f1)"
done

section "directories"
must "mkdir -p" mkdir -p tree/a/b/c
: > tree/a/b/c/leaf
mustfail "rmdir of a non-empty dir" "not empty" rmdir tree/a
must "rm -r" rm -r tree/a/b
[ ! -e tree/a/b ] || fail "rm -r left files"
must "rmdir" rmdir tree/a
must "rmdir" rmdir tree

echo "workout finished with $fails failure(s)"
[ $fails -eq 0 ]
