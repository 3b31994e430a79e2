# syntax=docker/dockerfile:1
ARG BASE=scratch
FROM ${BASE} AS first
ENV A=1 B="two words"
COPY <<EOT /inline
inline $A
EOT
WORKDIR /w
FROM first
COPY --from=first --chown=1:2 /inline /copied
LABEL x=y
ENTRYPOINT ["e"]
CMD c
