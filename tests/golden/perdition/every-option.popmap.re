# Rules in Perdition's order: the first match wins.
^alice@example\\.org$: box1.vpn
^bob@example\\.org$  box2.vpn:10143
@example\\.net$: box3.vpn
(.*)@old\\.example\\.org: $1@box4.vpn
^[a-k]: box5.vpn
.*: box6.vpn
^carol@example\\.com$: box7.vpn
