# Sourced on the GPU machine: espeak-ng from Debian's .debs in .espeak/ (downloaded
# with `apt-get download espeak-ng libespeak-ng1 espeak-ng-data libsonic0`),
# unpacked under /tmp, with the no-op libpcaudio built from pcaudio_stub.c
# (`gcc -O2 -shared -fPIC -Wl,-soname,libpcaudio.so.0 -o .espeak/libpcaudio.so.0
# training/device/pcaudio_stub.c`) in place of the real one and its audio stack.
ESP=/tmp/espeak-ng
if [ ! -x $ESP/usr/bin/espeak-ng ]; then
    mkdir -p $ESP
    for f in .espeak/*.deb; do dpkg -x "$f" $ESP; done
    cp .espeak/libpcaudio.so.0 $ESP/usr/lib/x86_64-linux-gnu/libpcaudio.so.0
fi
export PATH=$ESP/usr/bin:$PATH
export LD_LIBRARY_PATH=$ESP/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export ESPEAK_DATA_PATH=$ESP/usr/lib/x86_64-linux-gnu/espeak-ng-data
