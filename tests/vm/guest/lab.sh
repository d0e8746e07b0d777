# The lab: the rig's guest for a person. `prepare` creates VFs, `banner` says what to try,
# `tour` runs it all unattended (tests/vm/lab --tour).
. /etc/rig.sh
echo lab.sh "$@"
