<?php
/**
 * Fooking\Redis - the PSR-4 name of FookingRedis (../FookingRedis.php), for
 * Composer's autoloader; existing code keeps using the global name.
 */
namespace Fooking;

require_once __DIR__ . '/../FookingRedis.php';

class_alias(\FookingRedis::class, Redis::class);
