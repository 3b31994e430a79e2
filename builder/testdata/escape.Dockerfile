# escape=`
FROM scratch
SHELL ["/bin/sh", "-ec"]
CMD echo `
  continued
HEALTHCHECK --interval=5s CMD true
ONBUILD RUN true
EXPOSE 80 53/udp
VOLUME /v
USER 1:1
STOPSIGNAL SIGINT
