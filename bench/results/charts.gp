set terminal pngcairo size 900,520 font 'sans,10' noenhanced
set grid
set key outside right
set output 'rt_throughput_k1.png'
set title 'Round trips per second, 1 in flight per client, 64-byte messages (log scale)'
set logscale xy
set xlabel 'clients'
set ylabel 'messages/s'
set yrange [*:*]
plot 'rt_fooking-length_k1.dat' using 1:2 with linespoints lw 2 lc 1 title 'fooking length', 'rt_baseline-fcgi_k1.dat' using 1:2 with linespoints lw 2 lc 2 title 'baseline fcgi', 'rt_fooking-length-mpx_k1.dat' using 1:2 with linespoints lw 2 lc 3 title 'fooking length mpx', 'rt_baseline-length_k1.dat' using 1:2 with linespoints lw 2 lc 4 title 'baseline length', 'rt_fooking-ws-mpx_k1.dat' using 1:2 with linespoints lw 2 lc 5 title 'fooking ws mpx', 'rt_pushpin_k1.dat' using 1:2 with linespoints lw 2 lc 6 title 'Pushpin ws', 'rt_baseline-ws_k1.dat' using 1:2 with linespoints lw 2 lc 7 title 'baseline ws'
unset logscale xy
set output 'rt_throughput_k8.png'
set title 'Round trips per second, 8 in flight per client, 64-byte messages (log scale)'
set logscale xy
set xlabel 'clients'
set ylabel 'messages/s'
set yrange [*:*]
plot 'rt_fooking-length_k8.dat' using 1:2 with linespoints lw 2 lc 1 title 'fooking length', 'rt_baseline-fcgi_k8.dat' using 1:2 with linespoints lw 2 lc 2 title 'baseline fcgi', 'rt_fooking-length-mpx_k8.dat' using 1:2 with linespoints lw 2 lc 3 title 'fooking length mpx', 'rt_baseline-length_k8.dat' using 1:2 with linespoints lw 2 lc 4 title 'baseline length', 'rt_fooking-ws-mpx_k8.dat' using 1:2 with linespoints lw 2 lc 5 title 'fooking ws mpx', 'rt_pushpin_k8.dat' using 1:2 with linespoints lw 2 lc 6 title 'Pushpin ws', 'rt_baseline-ws_k8.dat' using 1:2 with linespoints lw 2 lc 7 title 'baseline ws'
unset logscale xy
set output 'rt_latency.png'
set title 'Round-trip latency, N=1000 K=8 S=64 (log scale)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set ylabel 'ms'
set xlabel ''
set yrange [*:*]
set xtics rotate by -20
plot 'rt_latency.dat' using 2:xtic(1) title 'p50', '' using 3 title 'p99', '' using 4 title 'p99.9'
unset logscale y
set xtics norotate
set style data linespoints
set output 'fanout.png'
set title 'Fan-out deliveries per second'
set logscale xy
set xlabel 'subscribers'
set ylabel 'deliveries/s'
set yrange [*:*]
plot 'fanout_fooking-sendall.dat' using 1:2 with linespoints lw 2 title 'fooking SEND_ALL', 'fanout_fooking-chpub.dat' using 1:2 with linespoints lw 2 title 'fooking CH_PUB', 'fanout_fooking-bus-sendall.dat' using 1:2 with linespoints lw 2 title 'fooking SEND_ALL via Redis', 'fanout_fooking-nats-sendall.dat' using 1:2 with linespoints lw 2 title 'fooking SEND_ALL via NATS', 'fanout_fooking-nats2-sendall.dat' using 1:2 with linespoints lw 2 title 'via NATS, 2 servers', 'fanout_nchan.dat' using 1:2 with linespoints lw 2 title 'nchan', 'fanout_baseline-fanout.dat' using 1:2 with linespoints lw 2 title 'baseline'
unset logscale xy
set output 'idle.png'
set title 'Memory per idle WebSocket connection (VmRSS)'
set xlabel 'connections'
set ylabel 'bytes per connection'
set yrange [0:*]
set logscale x
plot 'idle_fooking_gateway.dat' using 1:2 with linespoints lw 2 title 'fooking gateway', 'idle_fooking_router.dat' using 1:2 with linespoints lw 2 title 'fooking router', 'idle_nginx__nchan.dat' using 1:2 with linespoints lw 2 title 'nginx + nchan', 'idle_baseline.dat' using 1:2 with linespoints lw 2 title 'baseline', 2048 with lines dt 2 lw 2 lc rgb 'red' title '2 KiB target'
unset logscale x
set output 'connect.png'
set title 'WebSocket handshakes per second'
set style data histograms
set style fill solid 0.8 border -1
set yrange [0:*]
set xlabel ''
set ylabel 'handshakes/s'
plot 'connect.dat' using 2:xtic(1) notitle
