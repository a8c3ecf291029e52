# The frozen rootfs of an appliance as a container image, built without
# pulling any base image:
#
#     python -m runtime build dns --target oci -o out/dns
#     docker build -f Dockerfile -t appliance-dns out/dns
#
# (the build's output directory is the context: it holds rootfs/, and the
# repository's .venv and sources never reach the daemon).
# out/dns/dns-oci.tar is the same image, made without docker (docker load -i).
# The store's directory (/var/lib/appliance) comes writable in rootfs/, as
# COPY makes everything root's.
# The entry point is the image's init, which sees it is not PID 1 of a VM and
# only runs the appliance; options come from the environment (DNS_LISTEN=...)
# or from arguments after the image name.
FROM scratch
ARG ROOTFS=rootfs
COPY ${ROOTFS}/ /
ENV APPLIANCE_CONTAINER=1
USER 65534:65534
ENTRYPOINT ["/usr/bin/python3", "-I", "-S", "-m", "runtime.image.init"]
